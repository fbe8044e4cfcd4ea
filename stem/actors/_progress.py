"""The worker's progress writer: ``ctx.progress(...)`` throttled into result
records, written through the BrokerActor like every other task state.

A task may report progress in a tight loop; the backend sees at most one
write per task per ``interval`` seconds. The first report of an attempt is
written at once; later ones within the interval are coalesced and the
latest is written when the interval ends (one background task of the worker
does that for every running task, batching the records in one message), so
the last report always lands. The attempt's outcome record carries its last
report too, so a finished task shows where it ended.

Ordering: reports leave through the worker's :class:`Outbox`, the same
ordered path as the attempt's RUNNING record and its outcome, and a terminal
record is final in every backend, so a late report never hides an outcome.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import trio

from stem._clock import now
from stem._envelope import Envelope
from stem._progress import Progress
from stem._result import TaskResult
from stem._states import TaskState

from . import _outcomes
from ._brokermsg import BrokerMessage, StoreResults

#: default seconds between two stored reports of one task
PROGRESS_INTERVAL = 1.0


@attrs.define(eq=False)
class _Attempt:
    env: Envelope
    meta: dict[str, object]
    ttl: float | None
    latest: Progress | None = None
    pending: bool = False
    written_at: float = float("-inf")  # trio time of the last write


@attrs.define(eq=False)
class ProgressWriter:
    """Throttles the progress reports of one worker's running attempts.

    ``send`` hands a message to the BrokerActor without blocking (the
    worker's ``Outbox.tell``); ``emit`` is the worker's task-signal emitter,
    called with ``task_progress`` for every stored report.
    """

    send: Callable[[BrokerMessage], None]
    emit: Callable[..., None]
    interval: float = PROGRESS_INTERVAL
    _attempts: dict[str, _Attempt] = attrs.field(factory=dict, init=False)
    _due: trio.Event = attrs.field(factory=trio.Event, init=False)
    writes: int = attrs.field(default=0, init=False)

    def begin(
        self, env: Envelope, *, meta: dict[str, object], ttl: float | None
    ) -> Callable[[Progress], None]:
        """Track ``env``'s attempt; returns its report function (what
        ``ctx.progress`` calls). ``meta`` is the RUNNING record's meta."""
        attempt = _Attempt(env=env, meta=meta, ttl=ttl)
        self._attempts[env.id] = attempt

        def report(progress: Progress) -> None:
            if self._attempts.get(env.id) is attempt:
                self._report(attempt, progress)

        return report

    def end(self, task_id: str) -> Progress | None:
        """The attempt is over: forget it (a pending report is not written:
        the outcome record carries it); returns its latest report."""
        attempt = self._attempts.pop(task_id, None)
        return None if attempt is None else attempt.latest

    def _report(self, attempt: _Attempt, progress: Progress) -> None:
        attempt.latest = attrs.evolve(progress, at=now())
        if trio.current_time() - attempt.written_at >= self.interval:
            self._write([attempt])
        elif not attempt.pending:
            attempt.pending = True
            self._due.set()

    def _write(self, attempts: list[_Attempt]) -> None:
        records: list[TaskResult] = []
        at = trio.current_time()
        for attempt in attempts:
            attempt.pending = False
            attempt.written_at = at
            latest = attempt.latest
            assert latest is not None
            records.append(
                _outcomes.record(
                    attempt.env,
                    TaskState.RUNNING,
                    latest.at,
                    meta=dict(attempt.meta),
                    progress=latest,
                )
            )
        pairs = list(zip(records, attempts, strict=True))
        for ttl in {a.ttl for a in attempts}:
            same = tuple(r for r, a in pairs if a.ttl == ttl)
            self.send(StoreResults(results=same, ttl=ttl))
        self.writes += len(records)
        for attempt in attempts:
            assert attempt.latest is not None
            env = attempt.env
            self.emit(
                "task_progress",
                env.id,
                env.name,
                env.queue,
                env.attempt,
                progress=attempt.latest,
            )

    async def write_forever(self) -> None:
        """Write coalesced reports when their interval ends (the worker runs
        this in its helpers' nursery)."""
        while True:
            await self._due.wait()
            self._due = trio.Event()
            while True:
                pending = [a for a in self._attempts.values() if a.pending]
                if not pending:
                    break
                soonest = min(a.written_at for a in pending) + self.interval
                await trio.sleep_until(soonest)
                clock = trio.current_time()
                due = [
                    a
                    for a in self._attempts.values()
                    if a.pending and clock - a.written_at >= self.interval
                ]
                if due:
                    self._write(due)


__all__ = ["PROGRESS_INTERVAL", "ProgressWriter"]
