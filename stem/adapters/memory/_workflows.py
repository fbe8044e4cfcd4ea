"""Workflow runs, steps, timers, events and leases held in this process."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import trio

from stem._clock import now
from stem._codec import dumps, loads
from stem._result import ErrorInfo
from stem._wfstate import (
    cancelling,
    check_held,
    check_sendable,
    claimed,
    drivable,
    finished,
    is_due,
    matches,
    released,
    renewed,
    resolvable,
    resolved,
    run_filters,
    stepped,
    suspended,
    woken,
)
from stem.contracts import WorkflowRun, WorkflowStep


class MemoryWorkflowStore:
    """:class:`stem.contracts.WorkflowStore` in memory.

    Values are stored as JSON text (so a value that cannot be encoded fails
    here as it would on a real backend, and callers never share mutable state
    with the store). Every method runs without awaiting in the middle, so each
    is atomic.
    """

    def __init__(self) -> None:
        self._runs: dict[str, WorkflowRun] = {}
        self._steps: dict[str, dict[int, WorkflowStep]] = {}
        # topic -> {(run_id, index)}
        self._watchers: dict[str, dict[tuple[str, int], None]] = {}
        # (run_id, index) -> topic
        self._watching: dict[tuple[str, int], str] = {}
        # (run_id, topic) -> payloads (JSON), oldest first
        self._mailbox: dict[tuple[str, str], deque[str]] = {}
        self._changed = trio.Event()
        self._cursor = 0
        self._final: dict[str, trio.Event] = {}

    # ----------------------------------------------------------- helpers

    def _fire(self) -> None:
        self._cursor += 1
        self._changed.set()
        self._changed = trio.Event()

    def _store_run(self, run: WorkflowRun) -> None:
        # A JSON round trip of the parts that hold user data.
        self._runs[run.run_id] = attrs.evolve(
            run,
            params=loads(dumps(run.params, what="params")),
            result=loads(dumps(run.result, what="result")),
            history=(),
        )

    def _wake_nowait(self, run_id: str, at: float) -> None:
        run = woken(self._runs.get(run_id), at)
        if run is not None:
            self._runs[run_id] = run

    def _resolve(self, run_id: str, index: int, payload: str, at: float) -> bool:
        """Resolve watcher ``(run_id, index)`` with ``payload``; False (only
        the watcher dropped) when its run is no longer active."""
        topic = self._watching.pop((run_id, index), None)
        if topic is not None:
            self._watchers.get(topic, {}).pop((run_id, index), None)
        if not resolvable(self._runs.get(run_id)):
            return False
        step = self._steps.get(run_id, {}).get(index)
        if step is not None:
            self._steps[run_id][index] = resolved(step, payload, at)
        self._wake_nowait(run_id, at)
        return True

    def _drop_events(self, run_id: str) -> None:
        for watching in [k for k in self._watching if k[0] == run_id]:
            topic = self._watching.pop(watching)
            self._watchers.get(topic, {}).pop(watching, None)
        for box in [k for k in self._mailbox if k[0] == run_id]:
            del self._mailbox[box]

    # ----------------------------------------------------------- runs

    async def create_run(self, run: WorkflowRun) -> bool:
        await trio.lowlevel.checkpoint()
        if run.run_id in self._runs:
            return False
        self._store_run(run)
        self._steps[run.run_id] = {}
        self._fire()
        return True

    async def get_run(self, run_id: str) -> WorkflowRun | None:
        await trio.lowlevel.checkpoint()
        return self._runs.get(run_id)

    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        status: str | None = None,
        parent_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[WorkflowRun]:
        await trio.lowlevel.checkpoint()
        filters = run_filters(workflow=workflow, status=status, parent_id=parent_id)
        runs = [r for r in self._runs.values() if matches(r, filters)]
        runs.sort(key=lambda r: (r.created_at, r.run_id))
        return runs[offset : offset + limit]

    # ----------------------------------------------------------- steps

    async def save_step(self, step: WorkflowStep, *, fence: int) -> None:
        await trio.lowlevel.checkpoint()
        value = loads(dumps(step.value, what=f"the result of step {step.name!r}"))
        meta = loads(dumps(dict(step.meta), what="step meta"))
        run = stepped(self._runs.get(step.run_id), step.run_id, fence, now())
        self._runs[step.run_id] = run
        self._steps.setdefault(step.run_id, {})[step.index] = attrs.evolve(
            step, value=value, meta=meta
        )

    async def get_step(self, run_id: str, index: int) -> WorkflowStep | None:
        await trio.lowlevel.checkpoint()
        return self._steps.get(run_id, {}).get(index)

    async def list_steps(self, run_id: str) -> list[WorkflowStep]:
        await trio.lowlevel.checkpoint()
        steps = self._steps.get(run_id, {})
        return [steps[i] for i in sorted(steps)]

    # ----------------------------------------------------------- leases

    async def claim(
        self,
        owner: str,
        *,
        names: Sequence[str],
        lease: float,
        limit: int = 1,
        max_versions: Mapping[str, int] | None = None,
    ) -> list[WorkflowRun]:
        await trio.lowlevel.checkpoint()
        at = now()
        wanted = set(names)
        due = [r for r in self._runs.values() if is_due(r, wanted, at, max_versions)]
        due.sort(key=lambda r: (r.due_at or 0.0, r.run_id))
        taken = [claimed(run, owner, lease=lease, at=at) for run in due[:limit]]
        for run in taken:
            self._runs[run.run_id] = run
        return taken

    async def renew(self, run_id: str, fence: int, *, lease: float) -> None:
        await trio.lowlevel.checkpoint()
        self._runs[run_id] = renewed(
            self._runs.get(run_id), run_id, fence, lease=lease, at=now()
        )

    async def suspend(
        self,
        run_id: str,
        fence: int,
        *,
        until: float | None,
        wakes: int,
        current_step: str | None = None,
    ) -> None:
        await trio.lowlevel.checkpoint()
        self._runs[run_id] = suspended(
            self._runs.get(run_id),
            run_id,
            fence,
            until=until,
            wakes=wakes,
            current_step=current_step,
            at=now(),
        )
        self._fire()

    async def release(self, run_id: str, fence: int) -> None:
        await trio.lowlevel.checkpoint()
        self._runs[run_id] = released(self._runs.get(run_id), run_id, fence, now())
        self._fire()

    async def wake(self, run_ids: Sequence[str]) -> None:
        await trio.lowlevel.checkpoint()
        at = now()
        for run_id in run_ids:
            self._wake_nowait(run_id, at)
        if run_ids:
            self._fire()

    async def finish(
        self,
        run_id: str,
        fence: int,
        *,
        status: str,
        result: Any = None,
        error: ErrorInfo | None = None,
    ) -> None:
        await trio.lowlevel.checkpoint()
        run = finished(
            self._runs.get(run_id),
            run_id,
            fence,
            status=status,
            result=result,
            error=error,
            at=now(),
        )
        self._store_run(run)
        self._drop_events(run_id)
        event = self._final.pop(run_id, None)
        if event is not None:
            event.set()

    async def request_cancel(self, run_id: str) -> bool:
        await trio.lowlevel.checkpoint()
        run = cancelling(self._runs.get(run_id), now())
        if run is None:
            return False
        self._runs[run_id] = run
        self._fire()
        return True

    # ----------------------------------------------------------- events

    async def watch(self, run_id: str, index: int, topic: str, *, fence: int) -> bool:
        await trio.lowlevel.checkpoint()
        check_held(self._runs.get(run_id), run_id, fence, now())
        step = self._steps.get(run_id, {}).get(index)
        if step is not None and step.status == "done":
            return True
        if (run_id, index) in self._watching:
            return False
        box = self._mailbox.get((run_id, topic))
        if box:
            payload = box.popleft()
            if not box:
                del self._mailbox[(run_id, topic)]
            self._watching[(run_id, index)] = topic
            self._resolve(run_id, index, payload, now())
            return True
        self._watchers.setdefault(topic, {})[(run_id, index)] = None
        self._watching[(run_id, index)] = topic
        return False

    async def unwatch(self, run_id: str, index: int, *, fence: int) -> bool:
        await trio.lowlevel.checkpoint()
        check_held(self._runs.get(run_id), run_id, fence, now())
        topic = self._watching.pop((run_id, index), None)
        if topic is None:
            return False
        self._watchers.get(topic, {}).pop((run_id, index), None)
        return True

    async def emit(self, topic: str, payload: Any) -> list[str]:
        body = dumps(payload, what="event payload")
        await trio.lowlevel.checkpoint()
        at = now()
        watchers = self._watchers.pop(topic, {})
        reached = {
            run_id
            for run_id, index in watchers
            if self._resolve(run_id, index, body, at)
        }
        if reached:
            self._fire()
        return sorted(reached)

    async def send(self, run_id: str, topic: str, payload: Any) -> bool:
        body = dumps(payload, what="event payload")
        await trio.lowlevel.checkpoint()
        check_sendable(self._runs.get(run_id), run_id)
        at = now()
        # The run's lowest waiting step gets it (as in every other backend).
        indices = [i for r, i in self._watchers.get(topic, {}) if r == run_id]
        if indices:
            self._resolve(run_id, min(indices), body, at)
            self._fire()
            return True
        self._mailbox.setdefault((run_id, topic), deque()).append(body)
        return False

    # ----------------------------------------------------------- waiting

    async def next_due(
        self, names: Sequence[str], *, max_versions: Mapping[str, int] | None = None
    ) -> float | None:
        await trio.lowlevel.checkpoint()
        wanted = set(names)
        times = [
            r.due_at
            for r in self._runs.values()
            if drivable(r, wanted, max_versions) and r.due_at is not None
        ]
        return min(times) if times else None

    async def wait_due(self, cursor: int | None, *, timeout: float) -> int:
        if cursor is not None and cursor == self._cursor:
            event = self._changed
            with trio.move_on_after(max(timeout, 0.0)):
                await event.wait()
        else:
            await trio.lowlevel.checkpoint()
        return self._cursor

    async def wait_run(self, run_id: str, *, timeout: float) -> WorkflowRun | None:
        run = self._runs.get(run_id)
        if run is not None and run.is_final:
            await trio.lowlevel.checkpoint()
            return run
        event = self._final.setdefault(run_id, trio.Event())
        with trio.move_on_after(max(timeout, 0.0)):
            await event.wait()
        run = self._runs.get(run_id)
        return run if run is not None and run.is_final else None
