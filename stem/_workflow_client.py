"""``client.workflows``: start, wait for, inspect, signal and cancel runs."""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any

import attrs
import trio

from ._durations import Duration, to_seconds
from ._errors import WaitTimeout
from ._ids import check_id, new_id
from ._workflow import (
    DuplicateWorkflowRun,
    UnknownWorkflow,
    WorkflowCancelled,
    WorkflowFailed,
    WorkflowScript,
    WorkflowTimeout,
    WorkflowVersionMismatch,
    lookup_script,
)
from .actors._workflow import create_run
from .contracts import WORKFLOW_ACTIVE, WORKFLOW_FINAL, WorkflowRun, WorkflowStore

if TYPE_CHECKING:
    from .actors import Node


def _check_topic(topic: object) -> str:
    return check_id(topic, what="event topic", limit=200)


@attrs.define(eq=False)
class Workflows:
    """Workflow runs of one client: ``client.workflows``."""

    _node: Node

    @property
    def store(self) -> WorkflowStore:
        return self._node.backend.workflows

    def definition(self, name: str) -> WorkflowScript:
        """The registered :class:`WorkflowScript` called ``name``."""
        return lookup_script(self._node.app.workflows, name)

    async def start(
        self, name: str, params: Any = None, *, run_id: str | None = None
    ) -> str:
        """Start a run of workflow ``name``; returns its id once stored.

        ``params`` must be a JSON value (EncodeError otherwise, nothing
        stored). A ``run_id`` that exists raises DuplicateWorkflowRun.
        """
        script = self.definition(name)
        if run_id is not None:
            check_id(run_id, what="run_id", limit=200)
        run_id = run_id or new_id()
        if not await create_run(self._node, script, params, run_id):
            raise DuplicateWorkflowRun(f"a workflow run with id {run_id!r} exists")
        return run_id

    async def get(self, run_id: str) -> WorkflowRun | None:
        """The run with its step history (None for an unknown id)."""
        run = await self.store.get_run(run_id)
        if run is None:
            return None
        steps = await self.store.list_steps(run_id)
        return attrs.evolve(run, history=tuple(steps))

    async def wait(self, run_id: str, timeout: Duration | None = None) -> WorkflowRun:
        """Wait until the run is final and return it (with its history) if it
        completed; ``run.result`` is the script's return value.

        Raises WorkflowFailed, WorkflowCancelled or WorkflowVersionMismatch
        for the other final statuses, UnknownWorkflow for an unknown id, and
        stem.WaitTimeout when ``timeout`` passes first. Woken by the backend.
        """
        limit = float("inf") if timeout is None else to_seconds(timeout, name="timeout")
        deadline = trio.current_time() + limit
        if await self.store.get_run(run_id) is None:
            raise UnknownWorkflow(f"no workflow run with id {run_id!r}")
        while True:
            remaining = deadline - trio.current_time()
            if remaining <= 0:
                raise WaitTimeout(
                    f"workflow run {run_id} did not finish within {limit} s"
                )
            run = await self.store.wait_run(run_id, timeout=min(remaining, 3600.0))
            if run is not None:
                break
        full = await self.get(run_id)
        assert full is not None
        if full.status == "completed":
            return full
        message = f"workflow run {run_id} ({full.workflow}) {full.status}"
        if full.error is not None:
            message += f": {full.error.type}: {full.error.message}"
        if full.status == "cancelled":
            raise WorkflowCancelled(message)
        if full.status == "version-mismatch":
            raise WorkflowVersionMismatch(message)
        if full.error is not None and full.error.type == "stem.WorkflowTimeout":
            error = WorkflowTimeout(message)
            raise error
        raise WorkflowFailed(message, full.error)

    async def emit(self, topic: str, payload: Any = None) -> list[str]:
        """Deliver ``payload`` to every run waiting on ``topic`` now; returns
        their ids. Runs not waiting at this moment never see it."""
        ids = await self.store.emit(_check_topic(topic), payload)
        if ids:
            self._node.wake_workflow_engines()
        return ids

    async def send(self, run_id: str, topic: str, payload: Any = None) -> None:
        """Deliver ``payload`` on ``topic`` to one run: now if it waits for
        it, else when it next waits for ``topic`` (messages queue, oldest
        first). Raises UnknownWorkflow for an unknown or finished run
        (nothing is kept: a finished run takes no more events)."""
        _check_topic(topic)
        if await self.store.send(run_id, topic, payload):
            self._node.wake_workflow_engines()

    async def cancel(self, run_id: str) -> bool:
        """Ask for the run to be cancelled: the engine stops it at its next
        step (a sleeping or waiting run at once) and revokes its running
        activity. False if the run is unknown or already final."""
        ok = await self.store.request_cancel(run_id)
        if ok:
            self._node.wake_workflow_engines()
        return ok

    async def list(
        self,
        *,
        workflow: str | None = None,
        status: str | None = None,
        parent_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[WorkflowRun]:
        """Runs matching the filters, oldest first (without history)."""
        known = WORKFLOW_ACTIVE | WORKFLOW_FINAL
        if status is not None and status not in known:
            raise ValueError(
                f"unknown workflow status {status!r}; known: {', '.join(sorted(known))}"
            )
        if limit < 1 or offset < 0:
            raise ValueError("limit must be >= 1 and offset >= 0")
        return await self.store.list_runs(
            workflow=workflow,
            status=status,
            parent_id=parent_id,
            limit=limit,
            offset=offset,
        )
