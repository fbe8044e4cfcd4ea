"""The RUNNING records of a worker's attempts: :class:`StartRecords`.

An attempt's RUNNING record is stored once the attempt has run for
``after`` seconds (``WorkerConfig.running_record_after``, 0.05 s by
default), not when it starts. An attempt that ends sooner is stored once,
with its outcome: a flood of short tasks then costs one record write per
task instead of two (encoding, the write and the store's work), and what an
operator can see is unchanged for any task that runs long enough to be
watched. ``after=0`` stores every RUNNING record at the start, as before.
The records still due go out together, in one batch per result TTL.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import trio

from stem._envelope import Envelope
from stem._result import TaskResult
from stem._states import TaskState

from . import _outcomes
from ._broker import StoreResults


@attrs.define(eq=False)
class StartRecords:
    """Pending RUNNING records by receipt, sent when due (or dropped when
    their attempt ends first)."""

    send: Callable[[StoreResults], None]
    after: float
    worker_id: str
    #: receipt -> (Trio time due, envelope, start time on stem's clock, ttl)
    _pending: dict[str, tuple[float, Envelope, float, float | None]] = attrs.field(
        factory=dict, init=False
    )
    _added: trio.Event = attrs.field(factory=trio.Event, init=False)

    def started(
        self, receipt: str, env: Envelope, at: float, ttl: float | None
    ) -> None:
        """An attempt of ``env`` started at ``at`` (stem's clock)."""
        if self.after <= 0:
            self.send(StoreResults(results=(self._record(env, at),), ttl=ttl))
            return
        was_empty = not self._pending
        self._pending[receipt] = (trio.current_time() + self.after, env, at, ttl)
        if was_empty:
            # Only an idle sender needs waking: records are due in the
            # order they start, so a waiting sender's deadline stays right.
            self._added.set()

    def ended(self, receipt: str) -> None:
        """The attempt's outcome is on its way: its RUNNING record, if not
        sent yet, never will be (the outcome's record supersedes it)."""
        self._pending.pop(receipt, None)

    def _record(self, env: Envelope, at: float) -> TaskResult:
        return _outcomes.record(
            env, TaskState.RUNNING, at, meta={"worker_id": self.worker_id}
        )

    async def send_forever(self) -> None:
        """Send the records as they fall due, until cancelled."""
        pending = self._pending
        while True:
            if not pending:
                self._added = trio.Event()
                await self._added.wait()
                continue
            at = trio.current_time()
            by_ttl: dict[float | None, list[TaskResult]] = {}
            first_later: float | None = None
            for receipt, (due, env, started, ttl) in list(pending.items()):
                if due <= at:
                    del pending[receipt]
                    by_ttl.setdefault(ttl, []).append(self._record(env, started))
                elif first_later is None or due < first_later:
                    first_later = due
            for ttl, records in by_ttl.items():
                self.send(StoreResults(results=tuple(records), ttl=ttl))
            if first_later is not None:
                await trio.sleep_until(first_later)
            else:
                await trio.lowlevel.checkpoint()
