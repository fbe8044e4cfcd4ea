"""The in-memory result backend: records in a dict, waiters woken by writes."""

from __future__ import annotations

from collections.abc import Sequence

import trio

from stem._clock import now
from stem._groupstate import expired_error, group_deadlines, group_phase
from stem._result import TaskResult
from stem._taskquery import (
    SCAN_BOUND,
    bucket_of,
    check_state,
    clamp_limit,
    is_before,
    make_cursor,
    matches,
    parse_cursor,
)
from stem.contracts import TaskPage

_Record = tuple[TaskResult, float | None]  # (result, expires_at)
# (members, expires_at, forget_at): see stem._groupstate
_Group = tuple[dict[int, TaskResult], float | None, float | None]


class MemoryResultBackend:
    """Task results, group counters and one-shot claims held in memory.

    Expired records (``ttl``) are dropped lazily when read. ``wait`` sleeps on
    a per-task :class:`trio.Event` that every write of that task sets.
    """

    def __init__(self) -> None:
        self._records: dict[str, _Record] = {}
        self._waiters: dict[str, trio.Event] = {}
        self._groups: dict[str, _Group] = {}
        self._claims: dict[str, tuple[str, float | None]] = {}
        self._unique: dict[str, tuple[str, float | None]] = {}

    def _live(self, task_id: str, at: float) -> TaskResult | None:
        record = self._records.get(task_id)
        if record is None:
            return None
        expires = record[1]
        if expires is not None and at >= expires:
            del self._records[task_id]
            return None
        return record[0]

    def set_state_nowait(
        self, results: Sequence[TaskResult], *, ttl: float | None = None
    ) -> list[bool]:
        at = now()
        expires = None if ttl is None else at + ttl
        records = self._records
        waiters = self._waiters
        flags: list[bool] = []
        for result in results:
            task_id = result.task_id
            record = records.get(task_id)
            if (
                record is not None
                and record[0].state.is_terminal
                and (record[1] is None or at < record[1])
            ):
                flags.append(False)
                continue
            records[task_id] = (result, expires)
            flags.append(True)
            if waiters:
                event = waiters.pop(task_id, None)
                if event is not None:
                    event.set()
        return flags

    def create_nowait(
        self, results: Sequence[TaskResult], *, ttl: float | None = None
    ) -> list[bool]:
        """Store the records of tasks that have none live; True for those."""
        at = now()
        expires = None if ttl is None else at + ttl
        flags: list[bool] = []
        for result in results:
            task_id = result.task_id
            if self._live(task_id, at) is not None:
                flags.append(False)
                continue
            self._records[task_id] = (result, expires)
            flags.append(True)
            event = self._waiters.pop(task_id, None)
            if event is not None:
                event.set()
        return flags

    async def create(
        self, results: Sequence[TaskResult], *, ttl: float | None = None
    ) -> list[bool]:
        """Store records only where the task has none live (atomic: nothing
        awaits between the check and the write)."""
        await trio.lowlevel.checkpoint()
        return self.create_nowait(results, ttl=ttl)

    async def set_state(
        self, results: Sequence[TaskResult], *, ttl: float | None = None
    ) -> list[bool]:
        """Store results; a terminal record is final (False for that item)."""
        await trio.lowlevel.checkpoint()
        return self.set_state_nowait(results, ttl=ttl)

    async def get(self, task_id: str) -> TaskResult | None:
        await trio.lowlevel.checkpoint()
        return self._live(task_id, now())

    async def get_many(self, task_ids: Sequence[str]) -> list[TaskResult | None]:
        await trio.lowlevel.checkpoint()
        at = now()
        return [self._live(task_id, at) for task_id in task_ids]

    async def wait(self, task_id: str, *, timeout: float) -> TaskResult | None:
        """The terminal result, woken by the write; None after ``timeout``."""
        await trio.lowlevel.checkpoint()
        with trio.move_on_after(timeout):
            while True:
                result = self._live(task_id, now())
                if result is not None and result.state.is_terminal:
                    return result
                event = self._waiters.get(task_id)
                if event is None:
                    event = self._waiters[task_id] = trio.Event()
                await event.wait()
        return None

    async def forget(self, task_id: str) -> None:
        await trio.lowlevel.checkpoint()
        self._records.pop(task_id, None)

    async def group_add(
        self, group_id: str, index: int, result: TaskResult, *, ttl: float | None = None
    ) -> int:
        """Record member ``index``; returns how many distinct members are in."""
        await trio.lowlevel.checkpoint()
        at = now()
        group = self._groups.get(group_id)
        members: dict[int, TaskResult] = {}
        if group is not None:
            phase = group_phase(group[1], group[2], at)
            if phase == "expired":
                raise expired_error(group_id, group[1], at)
            if phase == "live":
                members = group[0]
        members[index] = result
        self._groups[group_id] = (members, *group_deadlines(at, ttl))
        return len(members)

    async def group_results(self, group_id: str) -> dict[int, TaskResult]:
        await trio.lowlevel.checkpoint()
        at = now()
        group = self._groups.get(group_id)
        if group is None:
            return {}
        phase = group_phase(group[1], group[2], at)
        if phase == "gone":
            del self._groups[group_id]
        if phase != "live":
            return {}
        return dict(group[0])

    async def claim_once(
        self, key: str, owner: str, *, ttl: float | None = None
    ) -> bool:
        """True for exactly one caller per ``key`` until the ttl passes."""
        await trio.lowlevel.checkpoint()
        at = now()
        held = self._claims.get(key)
        if held is not None and (held[1] is None or at < held[1]):
            return False
        self._claims[key] = (owner, None if ttl is None else at + ttl)
        return True

    async def reserve_unique(self, key: str, task_id: str, *, ttl: float | None) -> str:
        """Set ``key`` to ``task_id`` unless it is held; return the holder."""
        await trio.lowlevel.checkpoint()
        at = now()
        held = self._unique.get(key)
        if held is not None and (held[1] is None or at < held[1]):
            return held[0]
        self._unique[key] = (task_id, None if ttl is None else at + ttl)
        return task_id

    async def release_unique(self, key: str, task_id: str) -> None:
        """Free ``key`` if ``task_id`` holds it."""
        await trio.lowlevel.checkpoint()
        held = self._unique.get(key)
        if held is not None and held[0] == task_id:
            del self._unique[key]

    # -- listing (stem.contracts.TaskQuery) ----------------------------------

    async def list_tasks(
        self,
        *,
        state: str | None = None,
        queue: str | None = None,
        name: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> TaskPage:
        """A scan of the records held (memory holds what fits a process)."""
        await trio.lowlevel.checkpoint()
        state = check_state(state)
        cursor = parse_cursor(before)
        limit = clamp_limit(limit)
        at = now()
        live = [
            r
            for r, expires in self._records.values()
            if (expires is None or at < expires) and is_before(r, cursor)
        ]
        live.sort(key=lambda r: (r.updated_at, r.task_id), reverse=True)
        if state is not None or queue is not None or name is not None:
            live = live[:SCAN_BOUND]
        chosen = [r for r in live if matches(r, state=state, queue=queue, name=name)][
            : limit + 1
        ]
        more = len(chosen) > limit
        chosen = chosen[:limit]
        return TaskPage(
            results=tuple(chosen),
            next_before=make_cursor(chosen[-1]) if more else None,
        )

    async def finished_counts(
        self, *, since: float, bucket: float = 60.0
    ) -> dict[float, dict[str, int]]:
        await trio.lowlevel.checkpoint()
        counts: dict[float, dict[str, int]] = {}
        at = now()
        for result, expires in self._records.values():
            if expires is not None and at >= expires:
                continue
            if result.state.is_terminal and result.updated_at >= since:
                slot = counts.setdefault(bucket_of(result.updated_at, bucket), {})
                slot[result.state.value] = slot.get(result.state.value, 0) + 1
        return counts
