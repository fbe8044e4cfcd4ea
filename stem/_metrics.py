"""Task metrics through the OpenTelemetry metrics API.

:class:`StemMetrics` owns the instruments; :class:`stem._otel.OtelInstrumentation`
feeds it from the runtime's hooks (publish, attempt start, outcome) and from
signals (revocations and dead letters that never reach an attempt).

Instruments (attributes ``stem.task.name`` and ``messaging.destination.name``):

======================== ============== =====================================
name                     kind           meaning
======================== ============== =====================================
stem.tasks.published     Counter        envelopes stored by ``client.publish``
stem.tasks.started       Counter        execution attempts started
stem.tasks.succeeded     Counter        attempts that ended SUCCEEDED
stem.tasks.failed        Counter        tasks that ended FAILED (dead-lettered)
stem.tasks.retried       Counter        attempts that failed and were retried
stem.tasks.dead_lettered Counter        entries added to a dead-letter queue
stem.tasks.revoked       Counter        tasks that ended REVOKED
stem.task.runtime        Histogram (s)  time in the handler per attempt
stem.task.queue_wait     Histogram (s)  from due time to start of an attempt
stem.tasks.in_flight     UpDownCounter  attempts running now
stem.queue.depth         ObservableGauge tasks ready to be claimed per queue
======================== ============== =====================================

The counters and the up-down counter are observable instruments fed by
plain counts (see :class:`StemMetrics`); exporters see the same sums.

Needs ``opentelemetry-api`` (the ``otel`` extra).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import trio
from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from ._envelope import Envelope
from ._result import TaskResult
from ._signals import Signals, Subscription, TaskEvent
from ._states import TaskState
from ._version import __version__

if TYPE_CHECKING:
    from ._client import Client

logger = logging.getLogger("stem.metrics")

_Attrs = dict[str, str]

#: Histogram bucket boundaries (seconds) suited to background jobs.
TIME_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
)


#: One task name on one queue: the key of every per-task count.
Key = tuple[str, str]


class _Tally:
    """Cumulative counts per (task name, queue), read by an observable
    instrument at each collection. Counting is a dict update on the task's
    path; the SDK's aggregation runs only when a reader collects."""

    def __init__(self) -> None:
        self.counts: dict[Key, int] = {}

    def add(self, key: Key, amount: int = 1) -> None:
        counts = self.counts
        counts[key] = counts.get(key, 0) + amount

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        del options
        # list() copies under the GIL: a collecting thread never sees the dict
        # change size while it iterates.
        return [
            Observation(count, {"stem.task.name": name, _QUEUE: queue})
            for (name, queue), count in list(self.counts.items())
        ]


_QUEUE = "messaging.destination.name"


class StemMetrics:
    """The task instruments on one meter (``meter_provider`` or the global one).

    Counters are observable (``_Tally``): the per-task cost is a dict update
    instead of an SDK call per counter, so a task pays for the SDK only in
    its two histogram records (queue wait and runtime).
    """

    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        meter = metrics.get_meter("stem", __version__, meter_provider=meter_provider)
        self._attrs: dict[Key, _Attrs] = {}
        self._depths: dict[str, int] = {}
        self._subs: list[tuple[Signals, Subscription]] = []
        unit = "{task}"
        self.published = _Tally()
        self.started = _Tally()
        self.succeeded = _Tally()
        self.failed = _Tally()
        self.retried = _Tally()
        self.dead_lettered = _Tally()
        self.revoked = _Tally()
        self.in_flight = _Tally()
        for name, tally, description in (
            ("stem.tasks.published", self.published, "Tasks stored by publish"),
            ("stem.tasks.started", self.started, "Execution attempts started"),
            ("stem.tasks.succeeded", self.succeeded, "Attempts that succeeded"),
            ("stem.tasks.failed", self.failed, "Tasks that ended FAILED"),
            ("stem.tasks.retried", self.retried, "Attempts retried"),
            (
                "stem.tasks.dead_lettered",
                self.dead_lettered,
                "Entries added to a dead-letter queue",
            ),
            ("stem.tasks.revoked", self.revoked, "Tasks that ended REVOKED"),
        ):
            meter.create_observable_counter(
                name, callbacks=[tally.observe], unit=unit, description=description
            )
        meter.create_observable_up_down_counter(
            "stem.tasks.in_flight",
            callbacks=[self.in_flight.observe],
            unit=unit,
            description="Attempts running now",
        )
        self.runtime = meter.create_histogram(
            "stem.task.runtime",
            unit="s",
            description="Time spent in the task handler per attempt",
            explicit_bucket_boundaries_advisory=TIME_BUCKETS,
        )
        self.queue_wait = meter.create_histogram(
            "stem.task.queue_wait",
            unit="s",
            description="Time from a task's due time to the start of its attempt",
            explicit_bucket_boundaries_advisory=TIME_BUCKETS,
        )
        self.queue_depth_gauge = meter.create_observable_gauge(
            "stem.queue.depth",
            callbacks=[self._observe_depths],
            unit=unit,
            description="Tasks ready to be claimed, per queue (last reading)",
        )

    def attributes(self, key: Key) -> _Attrs:
        """The (cached) attribute set of one task name on one queue."""
        found = self._attrs.get(key)
        if found is None:
            if len(self._attrs) > 10_000:  # bound memory with unexpected names
                self._attrs.clear()
            found = {"stem.task.name": key[0], _QUEUE: key[1]}
            self._attrs[key] = found
        return found

    def on_published(self, envelopes: Sequence[Envelope]) -> None:
        tally = self.published
        for env in envelopes:
            tally.add((env.name, env.queue))

    def on_started(self, env: Envelope, queue_wait: float) -> Key:
        key = (env.name, env.queue)
        self.started.add(key)
        self.in_flight.add(key)
        self.queue_wait.record(max(queue_wait, 0.0), self.attributes(key))
        return key

    def on_outcome(
        self, key: Key, result: TaskResult | None, runtime: float | None
    ) -> None:
        if runtime is not None:
            self.runtime.record(max(runtime, 0.0), self.attributes(key))
        if result is None:
            return
        state = result.state
        if state is TaskState.SUCCEEDED:
            self.succeeded.add(key)
        elif state is TaskState.RETRYING:
            self.retried.add(key)
        elif state is TaskState.FAILED:
            self.failed.add(key)
            self.dead_lettered.add(key)

    def on_ended(self, key: Key) -> None:
        self.in_flight.add(key, -1)

    def queue_depth(self, queue: str, depth: int) -> None:
        self._depths[queue] = depth

    def _observe_depths(self, options: CallbackOptions) -> Iterable[Observation]:
        del options
        return [
            Observation(depth, {"messaging.destination.name": queue})
            for queue, depth in list(self._depths.items())
        ]

    # -- fed by signals ---------------------------------------------------------

    def watch(self, signals: Signals) -> None:
        """Count revocations and dead letters that happen outside an attempt
        (revoked or expired before running, undecodable messages, unknown task
        names) from ``signals`` (an App's). Idempotent per registry."""
        if any(s is signals for s, _ in self._subs):
            return
        self._subs.append((signals, signals.task_revoked.connect(self._on_revoked)))
        self._subs.append(
            (signals, signals.task_dead_lettered.connect(self._on_dead_lettered))
        )

    def unwatch(self) -> None:
        for signals, sub in self._subs:
            signals.signal(sub.signal).disconnect(sub)
        self._subs.clear()

    def _on_revoked(self, event: TaskEvent) -> None:
        self.revoked.add((event.name, event.queue))

    def _on_dead_lettered(self, event: TaskEvent) -> None:
        self.dead_lettered.add((event.name, event.queue))


async def poll_queue_depths(
    client: Client,
    queues: Sequence[str],
    *,
    interval: float = 15.0,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Read the depth of ``queues`` every ``interval`` seconds and report it to
    ``client.instrumentation.queue_depth`` (runs until cancelled)."""
    if interval <= 0:
        raise ValueError(f"interval must be > 0, got {interval}")
    task_status.started()
    broker = client.backend.broker
    while True:
        for queue in queues:
            try:
                stats = await broker.stats(queue)
            except Exception as exc:
                logger.warning("could not read the depth of %r: %s", queue, exc)
                continue
            client.instrumentation.queue_depth(queue, stats.pending)
        await trio.sleep(interval)
