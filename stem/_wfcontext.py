"""The ``wf`` object a workflow script gets: :class:`WorkflowContext`.

Every call a script makes on ``wf`` is a numbered step checkpointed in the
backend's WorkflowStore (see :mod:`stem._workflow`). The engine that drives
the run (``stem/actors/_workflow.py``) hands the context a
:class:`WorkflowHost`: the publishing, the stores and the creation of child
runs, so this module needs neither the facade nor the actors.
"""

from __future__ import annotations

import inspect
import uuid as _uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from ._clock import now as _now
from ._codec import dumps, loads
from ._durations import Duration, to_seconds
from ._producer import Producer
from ._result import ErrorInfo
from ._states import TaskState
from ._workflow import (
    ACTIVITY_RECHECK,
    ActivityFailed,
    ChildWorkflowFailed,
    NonDeterminismError,
    StepFailed,
    Suspend,
    WorkflowScript,
    WorkflowTimeout,
    error_info,
    lookup_script,
)
from .contracts import WorkflowRun, WorkflowStep

if TYPE_CHECKING:
    from ._app import App
    from .contracts import Backend


class WorkflowHost(Producer, Protocol):
    """What a running workflow needs from the node that drives it."""

    @property
    def app(self) -> App: ...

    @property
    def backend(self) -> Backend: ...

    async def create_run(
        self,
        script: WorkflowScript,
        params: Any,
        run_id: str,
        *,
        parent_id: str | None = None,
    ) -> bool:
        """Store a new run (False if ``run_id`` exists) and wake engines."""
        ...


@attrs.define(eq=False)
class WorkflowContext:
    """What a workflow script gets as ``wf``.

    Every ``await wf.<step>(...)`` either returns the step's recorded result
    (on replay) or starts the step and records it. Steps must be awaited one
    at a time, in an order that depends only on ``wf.params`` and earlier
    step results.
    """

    run: WorkflowRun
    host: WorkflowHost
    history: Sequence[WorkflowStep]
    _index: int = attrs.field(default=0, init=False)
    _unsaved: list[WorkflowStep] = attrs.field(factory=list, init=False)
    #: activity task ids this drive found pending (the engine watches them)
    pending_tasks: list[str] = attrs.field(factory=list, init=False)

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def params(self) -> Any:
        return self.run.params

    @property
    def workflow(self) -> str:
        return self.run.workflow

    @property
    def steps_seen(self) -> int:
        return self._index

    @property
    def _store(self) -> Any:
        return self.host.backend.workflows

    # ------------------------------------------------------------ plumbing

    def _next(self, kind: str, name: str) -> tuple[int, WorkflowStep | None]:
        index = self._index
        self._index += 1
        recorded = self.history[index] if index < len(self.history) else None
        if recorded is not None and (recorded.kind, recorded.name) != (kind, name):
            raise NonDeterminismError(
                f"workflow {self.workflow!r} run {self.run_id}: step {index} is "
                f"{kind} {name!r} in the script but {recorded.kind} "
                f"{recorded.name!r} in the history; the script changed under a "
                "running workflow (bump its version for incompatible changes)"
            )
        return index, recorded

    async def flush(self) -> None:
        """Store the ``now``/``uuid`` steps taken since the last write."""
        while self._unsaved:
            await self._store.save_step(self._unsaved[0])
            self._unsaved.pop(0)

    async def _save(self, step: WorkflowStep) -> None:
        await self.flush()
        await self._store.save_step(step)

    def _new(self, index: int, kind: str, name: str, **kw: Any) -> WorkflowStep:
        return WorkflowStep(
            run_id=self.run_id,
            index=index,
            kind=kind,
            name=name,
            started_at=_now(),
            **kw,
        )

    @staticmethod
    def _label(index: int, kind: str, name: str) -> str:
        return f"{index}:{kind}:{name}"

    def _replayed(self, step: WorkflowStep, failure: type[StepFailed]) -> Any:
        if step.status == "failed":
            assert step.error is not None
            if step.error.type == "stem.WorkflowTimeout":
                raise WorkflowTimeout(step.error.message)
            raise failure(self._label(step.index, step.kind, step.name), step.error)
        return step.value

    # ------------------------------------------------------------ deterministic values

    def now(self) -> float:
        """The current time (epoch seconds), recorded: a replay sees the same."""
        index, recorded = self._next("now", "now")
        if recorded is not None:
            return float(recorded.value)
        value = _now()
        self._unsaved.append(
            self._new(
                index, "now", "now", status="done", value=value, finished_at=value
            )
        )
        return value

    def uuid(self) -> str:
        """A random UUID string, recorded: a replay sees the same."""
        index, recorded = self._next("uuid", "uuid")
        if recorded is not None:
            return str(recorded.value)
        value = str(_uuid.uuid4())
        at = _now()
        self._unsaved.append(
            self._new(index, "uuid", "uuid", status="done", value=value, finished_at=at)
        )
        return value

    # ------------------------------------------------------------ steps

    async def step(self, name: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn()`` (sync or async) inline once and record its result.

        A crash while it runs runs it again on resume (at least once). If it
        raises, :class:`StepFailed` is raised here, now and on every replay.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"step name must be a non-empty string, got {name!r}")
        if not callable(fn):
            raise TypeError(f"wf.step needs a callable, got {fn!r}")
        index, recorded = self._next("step", name)
        if recorded is not None and recorded.status != "pending":
            return self._replayed(recorded, StepFailed)
        await self.flush()
        step = self._new(index, "step", name)
        try:
            value = fn()
            if inspect.isawaitable(value):
                value = await value
            value = loads(dumps(value, what=f"the result of step {name!r}"))
        except Exception as exc:
            info = error_info(exc)
            await self._save(
                attrs.evolve(step, status="failed", error=info, finished_at=_now())
            )
            raise StepFailed(self._label(index, "step", name), info) from exc
        await self._save(
            attrs.evolve(step, status="done", value=value, finished_at=_now())
        )
        return value

    async def activity(
        self,
        task_name: str,
        args: dict[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        max_retries: int | None = None,
    ) -> Any:
        """Run registered task ``task_name`` on a worker; returns its value.

        The task id is ``"<run_id>:<step index>"``; its retries follow its
        task options. Raises :class:`ActivityFailed` if it ends FAILED or
        REVOKED. Bad arguments raise EncodeError before anything is sent.
        """
        index, recorded = self._next("activity", task_name)
        if recorded is not None and recorded.status != "pending":
            return self._replayed(recorded, ActivityFailed)
        task_id = f"{self.run_id}:{index}"
        label = self._label(index, "activity", task_name)
        if recorded is None:
            env = self.host.build_envelope(
                task_name,
                args,
                queue=queue,
                priority=priority,
                max_retries=max_retries,
                task_id=task_id,
                meta={"workflow_run": self.run_id, "workflow_step": index},
            )
            await self._save(
                self._new(index, "activity", task_name, meta={"task_id": task_id})
            )
            await self.host.publish([env])
            self.pending_tasks.append(task_id)
            raise Suspend(_now() + ACTIVITY_RECHECK, label)
        result = await self.host.backend.results.get(task_id)
        if result is None:
            # Recorded as started but never published (a crash in between).
            env = self.host.build_envelope(
                task_name,
                args,
                queue=queue,
                priority=priority,
                max_retries=max_retries,
                task_id=task_id,
                meta={"workflow_run": self.run_id, "workflow_step": index},
            )
            await self.flush()
            await self.host.publish([env])
        elif result.is_terminal:
            if result.state is TaskState.SUCCEEDED:
                await self._save(
                    attrs.evolve(
                        recorded, status="done", value=result.value, finished_at=_now()
                    )
                )
                return result.value
            info = result.error or ErrorInfo(
                type="stem.TaskRevoked",
                message=str(result.meta.get("reason", result.state.value)),
            )
            await self._save(
                attrs.evolve(recorded, status="failed", error=info, finished_at=_now())
            )
            raise ActivityFailed(label, info)
        self.pending_tasks.append(task_id)
        raise Suspend(_now() + ACTIVITY_RECHECK, label)

    async def sleep(self, seconds: Duration) -> None:
        """Sleep durably: the run is parked in the store until the time comes;
        no worker, task or process is held meanwhile."""
        delay = to_seconds(seconds, name="seconds")
        index, recorded = self._next("sleep", "sleep")
        if recorded is not None and recorded.status != "pending":
            return
        label = self._label(index, "sleep", "sleep")
        if recorded is None:
            due = _now() + max(delay, 0.0)
            recorded = self._new(index, "sleep", "sleep", meta={"due_at": due})
            if delay <= 0:
                await self._save(attrs.evolve(recorded, status="done", finished_at=due))
                return
            await self._save(recorded)
        due = float(recorded.meta["due_at"])
        if _now() >= due:
            await self._save(attrs.evolve(recorded, status="done", finished_at=_now()))
            return
        raise Suspend(due, label)

    async def wait_for_event(self, topic: str, timeout: Duration | None = None) -> Any:
        """Wait for an event on ``topic``; returns its payload.

        Events come from ``client.workflows.emit(topic, payload)`` (to runs
        waiting now) or ``client.workflows.send(run_id, topic, payload)``
        (kept for this run until it waits). Raises :class:`WorkflowTimeout`
        after ``timeout`` seconds without one (now and on every replay).
        """
        if not isinstance(topic, str) or not topic:
            raise ValueError(f"event topic must be a non-empty string, got {topic!r}")
        limit = None if timeout is None else to_seconds(timeout, name="timeout")
        index, recorded = self._next("event", topic)
        if recorded is not None and recorded.status != "pending":
            return self._replayed(recorded, StepFailed)
        label = self._label(index, "event", topic)
        store = self._store
        if recorded is None:
            meta = {} if limit is None else {"timeout_at": _now() + max(limit, 0.0)}
            recorded = self._new(index, "event", topic, meta=meta)
            await self._save(recorded)
        # Watching again on resume is harmless (idempotent) and covers a crash
        # between recording the step and registering its watcher.
        if await store.watch(self.run_id, index, topic):
            return await self._delivered(index)
        timeout_at = recorded.meta.get("timeout_at")
        if timeout_at is not None and _now() >= float(timeout_at):
            if not await store.unwatch(self.run_id, index):
                return await self._delivered(index)
            message = f"no event {topic!r} within {limit if limit is not None else 0} s"
            info = ErrorInfo(type="stem.WorkflowTimeout", message=message)
            await self._save(
                attrs.evolve(recorded, status="failed", error=info, finished_at=_now())
            )
            raise WorkflowTimeout(message)
        raise Suspend(None if timeout_at is None else float(timeout_at), label)

    async def _delivered(self, index: int) -> Any:
        step = await self._store.get_step(self.run_id, index)
        assert step is not None
        assert step.status == "done", step
        return step.value

    async def child(
        self, name: str, params: Any = None, *, run_id: str | None = None
    ) -> Any:
        """Start workflow ``name`` as a child run and return its result.

        The child's id is ``"<run_id>:<step index>"`` unless given. Raises
        :class:`ChildWorkflowFailed` if the child fails or is cancelled.
        """
        index, recorded = self._next("child", name)
        if recorded is not None and recorded.status != "pending":
            return self._replayed(recorded, ChildWorkflowFailed)
        label = self._label(index, "child", name)
        if recorded is None:
            script = lookup_script(self.host.app.workflows, name)
            child_id = run_id or f"{self.run_id}:{index}"
            recorded = self._new(index, "child", name, meta={"child_run_id": child_id})
            await self._save(recorded)
            await self.host.create_run(script, params, child_id, parent_id=self.run_id)
            raise Suspend(None, label)
        child_id = str(recorded.meta["child_run_id"])
        child = await self._store.get_run(child_id)
        if child is None:
            script = lookup_script(self.host.app.workflows, name)
            await self.flush()
            await self.host.create_run(script, params, child_id, parent_id=self.run_id)
            raise Suspend(None, label)
        if not child.is_final:
            raise Suspend(None, label)
        if child.status == "completed":
            await self._save(
                attrs.evolve(
                    recorded, status="done", value=child.result, finished_at=_now()
                )
            )
            return child.result
        info = child.error or ErrorInfo(
            type="stem.WorkflowFailed", message=f"child run {child_id} {child.status}"
        )
        await self._save(
            attrs.evolve(recorded, status="failed", error=info, finished_at=_now())
        )
        raise ChildWorkflowFailed(label, info)


def check_history_consumed(ctx: WorkflowContext) -> None:
    """After a script returned: every recorded step must have been asked for."""
    if ctx.steps_seen < len(ctx.history):
        left = ctx.history[ctx.steps_seen]
        raise NonDeterminismError(
            f"workflow {ctx.workflow!r} run {ctx.run_id}: the script returned "
            f"after {ctx.steps_seen} steps but the history has step {left.index} "
            f"({left.kind} {left.name!r}); the script changed under a running "
            "workflow (bump its version for incompatible changes)"
        )
