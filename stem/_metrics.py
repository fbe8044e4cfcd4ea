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


class StemMetrics:
    """The task instruments on one meter (``meter_provider`` or the global one)."""

    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        meter = metrics.get_meter("stem", __version__, meter_provider=meter_provider)
        self._attrs: dict[tuple[str, str], _Attrs] = {}
        self._depths: dict[str, int] = {}
        self._subs: list[tuple[Signals, Subscription]] = []
        unit = "{task}"
        self.published = meter.create_counter(
            "stem.tasks.published", unit=unit, description="Tasks stored by publish"
        )
        self.started = meter.create_counter(
            "stem.tasks.started", unit=unit, description="Execution attempts started"
        )
        self.succeeded = meter.create_counter(
            "stem.tasks.succeeded", unit=unit, description="Attempts that succeeded"
        )
        self.failed = meter.create_counter(
            "stem.tasks.failed", unit=unit, description="Tasks that ended FAILED"
        )
        self.retried = meter.create_counter(
            "stem.tasks.retried", unit=unit, description="Attempts retried"
        )
        self.dead_lettered = meter.create_counter(
            "stem.tasks.dead_lettered",
            unit=unit,
            description="Entries added to a dead-letter queue",
        )
        self.revoked = meter.create_counter(
            "stem.tasks.revoked", unit=unit, description="Tasks that ended REVOKED"
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
        self.in_flight = meter.create_up_down_counter(
            "stem.tasks.in_flight", unit=unit, description="Attempts running now"
        )
        self.queue_depth_gauge = meter.create_observable_gauge(
            "stem.queue.depth",
            callbacks=[self._observe_depths],
            unit=unit,
            description="Tasks ready to be claimed, per queue (last reading)",
        )

    def attributes(self, name: str, queue: str) -> _Attrs:
        """The (cached) attribute set of one task name on one queue."""
        key = (name, queue)
        found = self._attrs.get(key)
        if found is None:
            if len(self._attrs) > 10_000:  # bound memory with unexpected names
                self._attrs.clear()
            found = {"stem.task.name": name, "messaging.destination.name": queue}
            self._attrs[key] = found
        return found

    # -- fed by the instrumentation -------------------------------------------

    def on_published(self, envelopes: Sequence[Envelope]) -> None:
        for env in envelopes:
            self.published.add(1, self.attributes(env.name, env.queue))

    def on_started(self, env: Envelope, queue_wait: float) -> _Attrs:
        attributes = self.attributes(env.name, env.queue)
        self.started.add(1, attributes)
        self.in_flight.add(1, attributes)
        self.queue_wait.record(max(queue_wait, 0.0), attributes)
        return attributes

    def on_outcome(
        self, attributes: _Attrs, result: TaskResult | None, runtime: float | None
    ) -> None:
        if runtime is not None:
            self.runtime.record(max(runtime, 0.0), attributes)
        if result is None:
            return
        state = result.state
        if state is TaskState.SUCCEEDED:
            self.succeeded.add(1, attributes)
        elif state is TaskState.RETRYING:
            self.retried.add(1, attributes)
        elif state is TaskState.FAILED:
            # every task that ends FAILED after running is dead-lettered
            self.failed.add(1, attributes)
            self.dead_lettered.add(1, attributes)
        # REVOKED is counted from the task_revoked signal (see watch()), which
        # also covers revocations that happen before any attempt starts.

    def on_ended(self, attributes: _Attrs) -> None:
        self.in_flight.add(-1, attributes)

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
        self.revoked.add(1, self.attributes(event.name, event.queue))

    def _on_dead_lettered(self, event: TaskEvent) -> None:
        self.dead_lettered.add(1, self.attributes(event.name, event.queue))


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
