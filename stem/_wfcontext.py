"""The ``wf`` object a workflow script gets: :class:`WorkflowContext`.

Every call a script makes on ``wf`` is a numbered step checkpointed in the
backend's WorkflowStore (see :mod:`stem._workflow`). The engine that drives
the run (``stem/actors/_workflow.py``) hands the context a
:class:`WorkflowHost`: the publishing, the stores and the creation of child
runs, so this module needs neither the facade nor the actors.

``wf.activity``, ``wf.step``, ``wf.sleep``, ``wf.wait_for_event`` and
``wf.child`` return a :class:`StepCall`: nothing happens until it is awaited
(alone, in :meth:`WorkflowContext.gather`, or as a saga's undo), and its step
number is taken when it starts, so the history follows the order the script
starts its steps in. Every write presents the fencing token of the drive's
claim; a refused write (:class:`~stem.WorkflowLeaseLost`) unwinds the script
with :class:`~stem._workflow.Abandon`.
"""

from __future__ import annotations

import inspect
import uuid as _uuid
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from ._clock import now as _now
from ._codec import dumps, loads
from ._durations import Duration, to_seconds
from ._producer import Producer
from ._result import ErrorInfo
from ._states import TaskState
from ._wfgather import gather_steps
from ._wfsaga import Saga
from ._wfstep import StepBody, StepCall
from ._workflow import (
    ACTIVITY_RECHECK,
    Abandon,
    ActivityFailed,
    ChildWorkflowFailed,
    NonDeterminismError,
    StepFailed,
    Suspend,
    WorkflowLeaseLost,
    WorkflowScript,
    WorkflowTimeout,
    error_info,
    lookup_script,
)
from .contracts import WorkflowRun, WorkflowStep, WorkflowStore

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

    async def revoke(
        self, task_id: str, *, terminate: bool = False, reason: str = "revoked"
    ) -> None:
        """Revoke a task (see ``stem.Client.revoke``)."""
        ...


@attrs.define(eq=False)
class WorkflowContext:
    """What a workflow script gets as ``wf``.

    Every ``await wf.<step>(...)`` either returns the step's recorded result
    (on replay) or starts the step and records it. Steps are awaited one at
    a time, or several at once with :meth:`gather`, in an order that depends
    only on ``wf.params``, earlier step results and :meth:`patched`.

    The plumbing (``next_step``, ``write``, ``save``, ``flush``,
    ``replayed``, ``label``, ``store``, ``pending_tasks``) serves the engine,
    ``wf.gather`` and sagas; a script never needs it.
    """

    run: WorkflowRun
    host: WorkflowHost
    history: Sequence[WorkflowStep]
    _recorded: dict[int, WorkflowStep] = attrs.field(init=False)
    _index: int = attrs.field(default=0, init=False)
    _unsaved: list[WorkflowStep] = attrs.field(factory=list, init=False)
    _lost: WorkflowLeaseLost | None = attrs.field(default=None, init=False)
    #: activity task ids this drive found pending (the engine watches them)
    pending_tasks: list[str] = attrs.field(factory=list, init=False)

    def __attrs_post_init__(self) -> None:
        self._recorded = {step.index: step for step in self.history}

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
    def version(self) -> int:
        """The version of the script this run started under."""
        return self.run.version

    @property
    def fence(self) -> int:
        """The fencing token of the claim driving the run now."""
        return self.run.fence

    @property
    def steps_seen(self) -> int:
        return self._index

    @property
    def lost(self) -> WorkflowLeaseLost | None:
        """Why a write of this drive was refused (None while it holds the run)."""
        return self._lost

    @property
    def store(self) -> WorkflowStore:
        return self.host.backend.workflows

    # ------------------------------------------------------------ plumbing

    def next_step(self, kind: str, name: str) -> tuple[int, WorkflowStep | None]:
        """Take the next step number for a ``kind`` step called ``name``;
        NonDeterminismError if the history recorded another step there."""
        index = self._index
        self._index += 1
        recorded = self._recorded.get(index)
        if recorded is not None and (recorded.kind, recorded.name) != (kind, name):
            raise NonDeterminismError(
                f"workflow {self.workflow!r} run {self.run_id}: step {index} is "
                f"{kind} {name!r} in the script but {recorded.kind} "
                f"{recorded.name!r} in the history; the script changed under a "
                "running workflow (guard the change with wf.patched(), or "
                "register the new code as a new version)"
            )
        return index, recorded

    def unconsumed(self) -> WorkflowStep | None:
        """The first recorded step the script has not asked for (None when
        the history is used up)."""
        left = [index for index in self._recorded if index >= self._index]
        return self._recorded[min(left)] if left else None

    async def write(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """Run a store write of this drive. A refused fencing token unwinds
        the script with Abandon (and every later write is refused at once)."""
        if self._lost is not None:
            raise Abandon(self._lost)
        try:
            return await call()
        except WorkflowLeaseLost as exc:
            self._lost = exc
            raise Abandon(exc) from exc

    async def _put(self, step: WorkflowStep) -> None:
        store = self.store
        await self.write(lambda: store.save_step(step, fence=self.fence))

    async def flush(self) -> None:
        """Store the ``now``/``uuid``/``patched`` steps taken since the last
        write."""
        while self._unsaved:
            await self._put(self._unsaved[0])
            self._unsaved.pop(0)

    async def save(self, step: WorkflowStep) -> None:
        """Store ``step`` (after the buffered ones)."""
        await self.flush()
        await self._put(step)

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
    def label(index: int, kind: str, name: str) -> str:
        """How a step is named in errors and ``current_step``."""
        return f"{index}:{kind}:{name}"

    def replayed(self, step: WorkflowStep) -> Any:
        """The recorded outcome of a finished step: its value, or its failure
        raised as the error a live run raised."""
        if step.status == "failed":
            assert step.error is not None
            if step.error.type == "stem.WorkflowTimeout":
                raise WorkflowTimeout(step.error.message)
            failure = {"activity": ActivityFailed, "child": ChildWorkflowFailed}.get(
                step.kind, StepFailed
            )
            raise failure(self.label(step.index, step.kind, step.name), step.error)
        return step.value

    def _call(self, kind: str, name: str, body: StepBody) -> StepCall:
        return StepCall(ctx=self, kind=kind, name=name, body=body)

    # ------------------------------------------------------------ deterministic values

    def now(self) -> float:
        """The current time (epoch seconds), recorded: a replay sees the same."""
        index, recorded = self.next_step("now", "now")
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
        index, recorded = self.next_step("uuid", "uuid")
        if recorded is not None:
            return str(recorded.value)
        value = str(_uuid.uuid4())
        at = _now()
        self._unsaved.append(
            self._new(index, "uuid", "uuid", status="done", value=value, finished_at=at)
        )
        return value

    # ------------------------------------------------------------ versions

    def patched(self, change_id: str) -> bool:
        """True where the run takes the code of change ``change_id``.

        A run that reaches this call for the first time records a marker
        and gets True; a run replaying a history with the marker here gets
        True; a run that passed this point before the change was deployed
        (its history has another step here) gets False and keeps its old
        path, consuming no step. ``if wf.patched("x"): new() else: old()``
        lets running and new runs share one script (see docs/workflows.md,
        *Changing a running workflow*).
        """
        _check_change_id(change_id)
        index = self._index
        recorded = self._recorded.get(index)
        if recorded is not None:
            if (recorded.kind, recorded.name) == ("patch", change_id):
                self._index += 1
                return True
            return False
        self._index += 1
        at = _now()
        self._unsaved.append(
            self._new(
                index, "patch", change_id, status="done", value=True, finished_at=at
            )
        )
        return True

    def deprecate_patch(self, change_id: str) -> None:
        """Mark where ``wf.patched(change_id)`` was once every run that took
        the old path has finished: a history with the marker here replays,
        and new runs record nothing."""
        _check_change_id(change_id)
        recorded = self._recorded.get(self._index)
        if recorded is not None and (recorded.kind, recorded.name) == (
            "patch",
            change_id,
        ):
            self._index += 1

    # ------------------------------------------------------------ composition

    async def gather(
        self, *calls: StepCall, return_exceptions: bool = False
    ) -> list[Any]:
        """Run several steps at once; returns their values in argument order.

        ``calls`` are steps made by ``wf.activity``, ``wf.child``,
        ``wf.step``, ``wf.sleep`` or ``wf.wait_for_event`` and not awaited.
        They take consecutive step numbers in argument order (the checkpoint
        order never depends on which finishes first), activities and child
        runs run concurrently on workers and engines, and inline steps run
        concurrently in this drive. The run waits until every step is
        finished; a replay after a crash returns the finished ones from the
        history without running them again.

        If a step fails, its siblings still pending are cancelled (running
        activities revoked, child runs cancelled, waits and sleeps dropped,
        each recorded as failed with ``stem.StepCancelled``) and the failure
        of the first failed step in argument order is raised. With
        ``return_exceptions=True`` nothing is cancelled: every step runs to
        its end and a failed one's exception takes its place in the list.
        """
        return await gather_steps(self, calls, return_exceptions=return_exceptions)

    def saga(self, *, parallel: bool = False) -> Saga:
        """A :class:`~stem._wfsaga.Saga`: register an undo for each step that
        completed, and on failure the undos run durably, newest first (all
        at once with ``parallel=True``)."""
        return Saga(self, parallel=parallel)

    # ------------------------------------------------------------ steps

    def step(self, name: str, fn: Callable[[], Any]) -> StepCall:
        """Run ``fn()`` (sync or async) inline once and record its result.

        A crash while it runs runs it again on resume (at least once). If it
        raises, :class:`StepFailed` is raised here, now and on every replay.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"step name must be a non-empty string, got {name!r}")
        if not callable(fn):
            raise TypeError(f"wf.step needs a callable, got {fn!r}")
        return self._call("step", name, partial(self._step, name, fn))

    async def _step(
        self,
        name: str,
        fn: Callable[[], Any],
        index: int,
        recorded: WorkflowStep | None,
    ) -> Any:
        if recorded is not None and recorded.status != "pending":
            return self.replayed(recorded)
        await self.flush()
        step = self._new(index, "step", name)
        try:
            value = fn()
            if inspect.isawaitable(value):
                value = await value
            value = loads(dumps(value, what=f"the result of step {name!r}"))
        except Exception as exc:
            info = error_info(exc)
            await self.save(
                attrs.evolve(step, status="failed", error=info, finished_at=_now())
            )
            raise StepFailed(self.label(index, "step", name), info) from exc
        await self.save(
            attrs.evolve(step, status="done", value=value, finished_at=_now())
        )
        return value

    def activity(
        self,
        task_name: str,
        args: dict[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        max_retries: int | None = None,
    ) -> StepCall:
        """Run registered task ``task_name`` on a worker; returns its value.

        The task id is ``"<run_id>:<step index>"``; its retries follow its
        task options. Raises :class:`ActivityFailed` if it ends FAILED or
        REVOKED. Bad arguments raise EncodeError before anything is sent.
        """
        options = {"queue": queue, "priority": priority, "max_retries": max_retries}
        return self._call(
            "activity", task_name, partial(self._activity, task_name, args, options)
        )

    async def _activity(
        self,
        task_name: str,
        args: dict[str, Any] | None,
        options: dict[str, Any],
        index: int,
        recorded: WorkflowStep | None,
    ) -> Any:
        if recorded is not None and recorded.status != "pending":
            return self.replayed(recorded)
        task_id = f"{self.run_id}:{index}"
        label = self.label(index, "activity", task_name)

        def envelope() -> Any:
            return self.host.build_envelope(
                task_name,
                args,
                **options,
                task_id=task_id,
                meta={"workflow_run": self.run_id, "workflow_step": index},
            )

        if recorded is None:
            env = envelope()
            await self.save(
                self._new(index, "activity", task_name, meta={"task_id": task_id})
            )
            await self.host.publish([env])
            self.pending_tasks.append(task_id)
            raise Suspend(_now() + ACTIVITY_RECHECK, label)
        result = await self.host.backend.results.get(task_id)
        if result is None:
            # Recorded as started but never published (a crash in between).
            env = envelope()
            await self.flush()
            await self.host.publish([env])
        elif result.is_terminal:
            if result.state is TaskState.SUCCEEDED:
                await self.save(
                    attrs.evolve(
                        recorded, status="done", value=result.value, finished_at=_now()
                    )
                )
                return result.value
            info = result.error or ErrorInfo(
                type="stem.TaskRevoked",
                message=str(result.meta.get("reason", result.state.value)),
            )
            await self.save(
                attrs.evolve(recorded, status="failed", error=info, finished_at=_now())
            )
            raise ActivityFailed(label, info)
        self.pending_tasks.append(task_id)
        raise Suspend(_now() + ACTIVITY_RECHECK, label)

    def sleep(self, seconds: Duration) -> StepCall:
        """Sleep durably: the run is parked in the store until the time comes;
        no worker, task or process is held meanwhile."""
        delay = to_seconds(seconds, name="seconds")
        return self._call("sleep", "sleep", partial(self._sleep, delay))

    async def _sleep(
        self, delay: float, index: int, recorded: WorkflowStep | None
    ) -> None:
        if recorded is not None and recorded.status != "pending":
            self.replayed(recorded)
            return
        label = self.label(index, "sleep", "sleep")
        if recorded is None:
            due = _now() + max(delay, 0.0)
            recorded = self._new(index, "sleep", "sleep", meta={"due_at": due})
            if delay <= 0:
                await self.save(attrs.evolve(recorded, status="done", finished_at=due))
                return
            await self.save(recorded)
        due = float(recorded.meta["due_at"])
        if _now() >= due:
            await self.save(attrs.evolve(recorded, status="done", finished_at=_now()))
            return
        raise Suspend(due, label)

    def wait_for_event(self, topic: str, timeout: Duration | None = None) -> StepCall:
        """Wait for an event on ``topic``; returns its payload.

        Events come from ``client.workflows.emit(topic, payload)`` (to runs
        waiting now) or ``client.workflows.send(run_id, topic, payload)``
        (kept for this run until it waits). Raises :class:`WorkflowTimeout`
        after ``timeout`` seconds without one (now and on every replay).
        """
        if not isinstance(topic, str) or not topic:
            raise ValueError(f"event topic must be a non-empty string, got {topic!r}")
        limit = None if timeout is None else to_seconds(timeout, name="timeout")
        return self._call("event", topic, partial(self._event, topic, limit))

    async def _event(
        self,
        topic: str,
        limit: float | None,
        index: int,
        recorded: WorkflowStep | None,
    ) -> Any:
        if recorded is not None and recorded.status != "pending":
            return self.replayed(recorded)
        label = self.label(index, "event", topic)
        store = self.store
        fence = self.fence
        if recorded is None:
            meta = {} if limit is None else {"timeout_at": _now() + max(limit, 0.0)}
            recorded = self._new(index, "event", topic, meta=meta)
            await self.save(recorded)
        # Watching again on resume is harmless (idempotent) and covers a crash
        # between recording the step and registering its watcher.
        if await self.write(
            lambda: store.watch(self.run_id, index, topic, fence=fence)
        ):
            return await self._delivered(index)
        timeout_at = recorded.meta.get("timeout_at")
        if timeout_at is not None and _now() >= float(timeout_at):
            if not await self.write(
                lambda: store.unwatch(self.run_id, index, fence=fence)
            ):
                return await self._delivered(index)
            message = f"no event {topic!r} within {limit if limit is not None else 0} s"
            info = ErrorInfo(type="stem.WorkflowTimeout", message=message)
            await self.save(
                attrs.evolve(recorded, status="failed", error=info, finished_at=_now())
            )
            raise WorkflowTimeout(message)
        raise Suspend(None if timeout_at is None else float(timeout_at), label)

    async def _delivered(self, index: int) -> Any:
        step = await self.store.get_step(self.run_id, index)
        assert step is not None
        assert step.status == "done", step
        return step.value

    def child(
        self, name: str, params: Any = None, *, run_id: str | None = None
    ) -> StepCall:
        """Start workflow ``name`` as a child run and return its result.

        The child's id is ``"<run_id>:<step index>"`` unless given. Raises
        :class:`ChildWorkflowFailed` if the child fails or is cancelled.
        """
        return self._call("child", name, partial(self._child, name, params, run_id))

    async def _child(
        self,
        name: str,
        params: Any,
        run_id: str | None,
        index: int,
        recorded: WorkflowStep | None,
    ) -> Any:
        if recorded is not None and recorded.status != "pending":
            return self.replayed(recorded)
        label = self.label(index, "child", name)
        if recorded is None:
            script = lookup_script(self.host.app.workflows, name)
            child_id = run_id or f"{self.run_id}:{index}"
            recorded = self._new(index, "child", name, meta={"child_run_id": child_id})
            await self.save(recorded)
            await self.host.create_run(script, params, child_id, parent_id=self.run_id)
            raise Suspend(None, label)
        child_id = str(recorded.meta["child_run_id"])
        child = await self.store.get_run(child_id)
        if child is None:
            script = lookup_script(self.host.app.workflows, name)
            await self.flush()
            await self.host.create_run(script, params, child_id, parent_id=self.run_id)
            raise Suspend(None, label)
        if not child.is_final:
            raise Suspend(None, label)
        if child.status == "completed":
            await self.save(
                attrs.evolve(
                    recorded, status="done", value=child.result, finished_at=_now()
                )
            )
            return child.result
        info = child.error or ErrorInfo(
            type="stem.WorkflowFailed", message=f"child run {child_id} {child.status}"
        )
        await self.save(
            attrs.evolve(recorded, status="failed", error=info, finished_at=_now())
        )
        raise ChildWorkflowFailed(label, info)


def _check_change_id(change_id: object) -> None:
    if not isinstance(change_id, str) or not change_id:
        raise ValueError(f"a change id must be a non-empty string, got {change_id!r}")


def check_history_consumed(ctx: WorkflowContext) -> None:
    """After a script returned: every recorded step must have been asked for."""
    left = ctx.unconsumed()
    if left is not None:
        raise NonDeterminismError(
            f"workflow {ctx.workflow!r} run {ctx.run_id}: the script returned "
            f"after {ctx.steps_seen} steps but the history has step {left.index} "
            f"({left.kind} {left.name!r}); the script changed under a running "
            "workflow (guard the change with wf.patched(), or register the new "
            "code as a new version)"
        )
