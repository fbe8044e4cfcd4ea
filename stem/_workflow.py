"""Durable workflows: :class:`WorkflowScript`, the ``wf`` object, replay.

A workflow is an ``async def fn(wf)`` script. Every call it makes on ``wf``
(``activity``, ``step``, ``sleep``, ``wait_for_event``, ``child``, ``now``,
``uuid``) is a numbered step checkpointed in the backend's WorkflowStore.
The engine runs the script from the top on every resume: a step already in
the history returns its stored result without running again; the first step
that is not finished (an activity still running, a sleep not yet due, an
event not yet arrived) raises the internal :class:`Suspend` to unwind the
script, and the engine parks the run in the store until something makes it
due. A script must therefore be deterministic: the same history must lead it
through the same steps, or the run fails with :class:`NonDeterminismError`.
"""

from __future__ import annotations

import inspect
import uuid as _uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ._clock import now as _now
from ._codec import dumps, loads
from ._durations import Duration, to_seconds
from ._errors import StemError
from ._result import ErrorInfo
from ._states import TaskState
from .contracts import WorkflowRun, WorkflowStep

if TYPE_CHECKING:
    from ._client import Client

#: How long a run waiting on an activity sleeps before it re-reads the
#: activity's result by itself (a fallback: finish hooks wake it at once).
ACTIVITY_RECHECK = 300.0


# --------------------------------------------------------------------------
# Errors


class WorkflowError(StemError):
    """Base of the workflow errors."""


class UnknownWorkflow(WorkflowError, LookupError):
    """No workflow of that name is registered (or no run has that id)."""


class DuplicateWorkflowRun(WorkflowError):
    """A run with that id already exists."""


class NonDeterminismError(WorkflowError):
    """The script asked for a different step than its history recorded."""


class WorkflowCancelled(WorkflowError):
    """The run was cancelled (``client.workflows.cancel``)."""


class WorkflowTimeout(WorkflowError, TimeoutError):
    """``wait_for_event`` timed out, or the run passed its ``max_duration``."""


class WorkflowVersionMismatch(WorkflowError):
    """The run was started under another version of its workflow."""


class WorkflowFailed(WorkflowError):
    """The run failed; ``error`` holds the failure (``client.workflows.wait``)."""

    def __init__(self, message: str, error: ErrorInfo | None = None) -> None:
        super().__init__(message)
        self.error = error


class StepFailed(WorkflowError):
    """A step failed; raised inside the script (also on replay), so a script
    may catch it. ``step`` names the step, ``error`` is the recorded error."""

    def __init__(self, step: str, error: ErrorInfo) -> None:
        super().__init__(f"step {step} failed: {error.type}: {error.message}")
        self.step = step
        self.error = error


class ActivityFailed(StepFailed):
    """An activity ended FAILED or REVOKED (after its retries)."""


class ChildWorkflowFailed(StepFailed):
    """A child workflow did not complete."""


class Suspend(BaseException):
    """Internal: unwinds the script at a step that is not finished yet.

    A BaseException so that a script's ``except Exception`` cannot swallow it.
    ``until`` is when the run should be looked at again (None: only a wake).
    """

    def __init__(self, until: float | None, step: str) -> None:
        super().__init__(step)
        self.until = until
        self.step = step


# --------------------------------------------------------------------------
# Definitions


ScriptFn = Callable[["WorkflowContext"], Awaitable[Any]]


def _check_name(_inst: Any, _attr: Any, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"workflow name must be a non-empty string, got {value!r}")


def _check_fn(_inst: Any, _attr: Any, value: Any) -> None:
    if not inspect.iscoroutinefunction(value):
        raise TypeError(
            f"a workflow script must be an `async def fn(wf)` function, got {value!r}"
        )


def _check_version(_inst: Any, _attr: Any, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"workflow version must be an int >= 1, got {value!r}")


def _duration(value: Duration | None) -> float | None:
    if value is None:
        return None
    seconds = to_seconds(value, name="max_duration")
    if seconds <= 0:
        raise ValueError(f"max_duration must be > 0 seconds, got {value!r}")
    return seconds


@attrs.frozen
class WorkflowScript:
    """A durable workflow: ``WorkflowScript("order.process", fn, version=1)``.

    ``fn`` is ``async def fn(wf)``; ``version`` pins runs to the code that
    started them (a run started under another version is reported as
    ``version-mismatch``, never replayed with new code); ``max_duration``
    (seconds or timedelta) fails a run that has not finished that long after
    it started. Register it with ``stem.App(workflows=[...])``.
    """

    name: str = attrs.field(validator=_check_name)
    fn: ScriptFn = attrs.field(validator=_check_fn)
    version: int = attrs.field(default=1, kw_only=True, validator=_check_version)
    max_duration: float | None = attrs.field(
        default=None, kw_only=True, converter=_duration
    )


# --------------------------------------------------------------------------
# The ``wf`` object


def _error_info(
    exc: BaseException, kind: type[BaseException] | None = None
) -> ErrorInfo:
    info = ErrorInfo.from_exception(exc)
    return info if kind is None else attrs.evolve(info, type=f"stem.{kind.__name__}")


@attrs.define(eq=False)
class WorkflowContext:
    """What a workflow script gets as ``wf``.

    Every ``await wf.<step>(...)`` either returns the step's recorded result
    (on replay) or starts the step and records it. Steps must be awaited one
    at a time, in an order that depends only on ``wf.params`` and earlier
    step results.
    """

    run: WorkflowRun
    client: Client
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
        return self.client.backend.workflows

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
            info = _error_info(exc)
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
            env = self.client.build_envelope(
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
            await self.client.publish([env])
            self.pending_tasks.append(task_id)
            raise Suspend(_now() + ACTIVITY_RECHECK, label)
        result = await self.client.backend.results.get(task_id)
        if result is None:
            # Recorded as started but never published (a crash in between).
            env = self.client.build_envelope(
                task_name,
                args,
                queue=queue,
                priority=priority,
                max_retries=max_retries,
                task_id=task_id,
                meta={"workflow_run": self.run_id, "workflow_step": index},
            )
            await self.flush()
            await self.client.publish([env])
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
        workflows = self.client.workflows
        if recorded is None:
            script = workflows.definition(name)
            child_id = run_id or f"{self.run_id}:{index}"
            recorded = self._new(index, "child", name, meta={"child_run_id": child_id})
            await self._save(recorded)
            await workflows._create(script, params, child_id, parent_id=self.run_id)
            raise Suspend(None, label)
        child_id = str(recorded.meta["child_run_id"])
        child = await self._store.get_run(child_id)
        if child is None:
            script = workflows.definition(name)
            await self.flush()
            await workflows._create(script, params, child_id, parent_id=self.run_id)
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


def registry(workflows: Mapping[str, Any]) -> dict[str, WorkflowScript]:
    """The app's workflows, checked to be WorkflowScripts."""
    found: dict[str, WorkflowScript] = {}
    for name, script in workflows.items():
        if not isinstance(script, WorkflowScript):
            raise TypeError(
                f"{script!r} registered as {name!r} is not a WorkflowScript"
            )
        found[name] = script
    return found
