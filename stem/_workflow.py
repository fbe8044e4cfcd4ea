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
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from ._clock import now as _now
from ._codec import dumps, loads
from ._durations import Duration, to_seconds
from ._errors import StemError
from ._result import ErrorInfo
from ._signals import WorkflowEvent
from ._text import has_control
from .contracts import WorkflowRun

if TYPE_CHECKING:
    from ._wfcontext import WorkflowContext

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


class WorkflowLeaseLost(WorkflowError):
    """A write of a workflow drive was refused: the fencing token it presented
    no longer holds the run's lease (the lease passed, the run was claimed
    again, even by the same engine, or the run is final). Nothing was
    written. The engine stops driving the run; the newer claim carries on.

    ``run_id`` and ``fence`` name the refused claim; ``reason`` says why."""

    def __init__(self, run_id: str, fence: int, reason: str) -> None:
        super().__init__(
            f"workflow run {run_id!r}: fencing token {fence} is stale ({reason})"
        )
        self.run_id = run_id
        self.fence = fence
        self.reason = reason


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


class CompensationFailed(WorkflowError):
    """Undoing a saga's completed steps failed for some of them.

    Raised after every undo was tried, chained from the failure that started
    the compensation (``__cause__``); ``errors`` maps each failed undo's step
    label (``"<index>:<kind>:<name>"``) to its error."""

    def __init__(self, errors: Mapping[str, ErrorInfo]) -> None:
        listed = "; ".join(
            f"{label}: {e.type}: {e.message}" for label, e in errors.items()
        )
        super().__init__(f"{len(errors)} compensation(s) failed: {listed}")
        self.errors = dict(errors)


class Suspend(BaseException):
    """Internal: unwinds the script at a step that is not finished yet.

    A BaseException so that a script's ``except Exception`` cannot swallow it.
    ``until`` is when the run should be looked at again (None: only a wake).
    """

    def __init__(self, until: float | None, step: str) -> None:
        super().__init__(step)
        self.until = until
        self.step = step


class Abandon(BaseException):
    """Internal: unwinds the script once a write of its drive was refused
    (:class:`WorkflowLeaseLost`), so no ``except Exception`` in the script can
    keep a drive going that no longer owns the run; the engine stops without
    writing anything more."""

    def __init__(self, lost: WorkflowLeaseLost) -> None:
        super().__init__(str(lost))
        self.lost = lost


# --------------------------------------------------------------------------
# Definitions


ScriptFn = Callable[["WorkflowContext"], Awaitable[Any]]


def _check_name(_inst: Any, _attr: Any, value: Any) -> None:
    if (
        not isinstance(value, str)
        or not value.strip()
        or len(value) > 200
        or has_control(value)
    ):
        raise ValueError(
            "workflow name must be 1-200 characters without control characters, "
            f"got {value!r}"
        )


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
    started them: several versions of one name may be registered side by
    side, new runs start on the highest, and a run is only ever replayed by
    the script of its own version (an engine that lacks it leaves a newer run
    to an engine that has it and reports an older one as
    ``version-mismatch``). ``max_duration`` (seconds or timedelta) fails a
    run that has not finished that long after it started. Register it with
    ``stem.App(workflows=[...])``.
    """

    name: str = attrs.field(validator=_check_name)
    fn: ScriptFn = attrs.field(validator=_check_fn)
    version: int = attrs.field(default=1, kw_only=True, validator=_check_version)
    max_duration: float | None = attrs.field(
        default=None, kw_only=True, converter=_duration
    )


# --------------------------------------------------------------------------
# Helpers shared by the engine and the client


def error_info(
    exc: BaseException, kind: type[BaseException] | None = None
) -> ErrorInfo:
    """How a failed step records ``exc`` (typed as ``kind`` when given)."""
    info = ErrorInfo.from_exception(exc)
    return info if kind is None else attrs.evolve(info, type=f"stem.{kind.__name__}")


def lookup_script(workflows: Mapping[str, Any], name: str) -> WorkflowScript:
    """The :class:`WorkflowScript` registered as ``name``."""
    script = workflows.get(name)
    if script is None:
        known = ", ".join(sorted(workflows)) or "none"
        raise UnknownWorkflow(
            f"no workflow named {name!r} is registered (known: {known})"
        )
    if not isinstance(script, WorkflowScript):
        raise TypeError(f"{script!r} is not a stem.WorkflowScript")
    return script


def new_run(
    script: WorkflowScript,
    params: Any,
    run_id: str,
    *,
    at: float,
    parent_id: str | None = None,
) -> WorkflowRun:
    """The record of a run of ``script`` created at ``at`` (``params`` must
    be a JSON value: EncodeError otherwise)."""
    return WorkflowRun(
        run_id=run_id,
        workflow=script.name,
        version=script.version,
        params=loads(dumps(params, what="params")),
        status="pending",
        created_at=at,
        updated_at=at,
        due_at=at,
        deadline=None if script.max_duration is None else at + script.max_duration,
        parent_id=parent_id,
    )


def run_event(
    signal: str, run: WorkflowRun, step: str | None = None, **kw: Any
) -> WorkflowEvent:
    """The lifecycle event ``signal`` of ``run``."""
    return WorkflowEvent(
        signal=signal,
        at=_now(),
        run_id=run.run_id,
        workflow=run.workflow,
        step=step,
        **kw,
    )


def registry(
    versions: Mapping[str, Mapping[int, Any]],
) -> dict[str, dict[int, WorkflowScript]]:
    """The app's workflows by name and version (``app.workflow_versions``),
    checked to be WorkflowScripts."""
    found: dict[str, dict[int, WorkflowScript]] = {}
    for name, scripts in versions.items():
        for version, script in scripts.items():
            if not isinstance(script, WorkflowScript):
                raise TypeError(
                    f"{script!r} registered as {name!r} is not a WorkflowScript"
                )
            found.setdefault(name, {})[version] = script
    return found
