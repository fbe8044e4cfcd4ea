"""The rules of a workflow run's life, shared by every WorkflowStore backend.

Pure functions on :class:`~stem.contracts.WorkflowRun` and
:class:`~stem.contracts.WorkflowStep` records: no I/O, no clock (the time of
a change is passed in as ``at``). A backend reads the records, asks one of
these what the new record is and writes it with its own atomic
read-modify-write (a transaction, WATCH/MULTI, or no ``await`` in the
middle), so the stores agree by construction.

Writes of a drive present the fencing token of their claim (``fence``); the
transitions for them raise :class:`~stem.WorkflowLeaseLost` (inside the
backend's transaction, so nothing is written) unless that claim still holds
the lease. Transitions that do not belong to a drive return None where the
change does not apply.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import attrs

from ._codec import loads
from ._result import ErrorInfo
from ._workflow import UnknownWorkflow, WorkflowLeaseLost
from .contracts import WORKFLOW_ACTIVE, WORKFLOW_FINAL, WorkflowRun, WorkflowStep

#: SQL condition on a ``status`` column: the run is active.
ACTIVE_SQL = "status IN ({})".format(
    ", ".join(f"'{s}'" for s in sorted(WORKFLOW_ACTIVE))
)


def check_final(status: str) -> None:
    """Raise ValueError unless ``status`` is a final workflow status."""
    if status not in WORKFLOW_FINAL:
        raise ValueError(f"not a final workflow status: {status!r}")


# ----------------------------------------------------------- queries


def lease_problem(run: WorkflowRun | None, fence: int, at: float) -> str | None:
    """Why the claim ``fence`` does not hold ``run``'s lease at ``at`` (None
    when it does)."""
    if run is None:
        return "no such run"
    if run.status not in WORKFLOW_ACTIVE:
        return f"the run is {run.status}"
    if run.fence != fence:
        return (
            f"the run was claimed again since (token {run.fence}, "
            f"by {run.lease_owner or 'an engine that released it'})"
        )
    if run.lease_owner is None or run.due_at is None:
        return f"the claim released the run (it is {run.status})"
    if run.due_at <= at:
        return f"the lease passed {at - run.due_at:.3f} s ago"
    return None


def held(run: WorkflowRun | None, fence: int, at: float) -> bool:
    """The claim ``fence`` holds an unexpired lease on the active ``run``."""
    return lease_problem(run, fence, at) is None


def check_held(
    run: WorkflowRun | None, run_id: str, fence: int, at: float
) -> WorkflowRun:
    """``run`` if the claim ``fence`` holds its lease at ``at``; raises
    :class:`WorkflowLeaseLost` otherwise."""
    problem = lease_problem(run, fence, at)
    if problem is not None:
        raise WorkflowLeaseLost(run_id, fence, problem)
    assert run is not None
    return run


def version_allowed(run: WorkflowRun, max_versions: Mapping[str, int] | None) -> bool:
    """``run`` is not newer than the engine's code for its workflow."""
    if max_versions is None:
        return True
    top = max_versions.get(run.workflow)
    return top is None or run.version <= top


def drivable(
    run: WorkflowRun,
    names: Collection[str],
    max_versions: Mapping[str, int] | None = None,
) -> bool:
    """``run`` is active, of one of the workflows ``names``, and not newer
    than ``max_versions`` allows."""
    return (
        run.status in WORKFLOW_ACTIVE
        and run.workflow in names
        and version_allowed(run, max_versions)
    )


def is_due(
    run: WorkflowRun,
    names: Collection[str],
    at: float,
    max_versions: Mapping[str, int] | None = None,
) -> bool:
    """``run`` may be claimed at ``at`` by an engine driving ``names``."""
    return (
        drivable(run, names, max_versions)
        and run.due_at is not None
        and run.due_at <= at
    )


def version_filter(
    names: Sequence[str], max_versions: Mapping[str, int] | None
) -> list[tuple[str, int | None]]:
    """(workflow, highest version or None for any) for each of ``names``,
    for a SQL backend's claim and next_due conditions."""
    limits = max_versions or {}
    return [(name, limits.get(name)) for name in names]


def run_filters(
    *, workflow: str | None, status: str | None, parent_id: str | None
) -> list[tuple[str, str]]:
    """The ``list_runs`` filters that are set, as (field or column, value)."""
    given = (("workflow", workflow), ("status", status), ("parent_id", parent_id))
    return [(field, value) for field, value in given if value is not None]


def matches(run: WorkflowRun, filters: Sequence[tuple[str, str]]) -> bool:
    """``run`` passes every filter of :func:`run_filters`."""
    return all(getattr(run, field) == value for field, value in filters)


# ----------------------------------------------------------- transitions


def claimed(run: WorkflowRun, owner: str, *, lease: float, at: float) -> WorkflowRun:
    """``run`` (found due) leased to ``owner`` for ``lease`` seconds, with the
    next fencing token."""
    return attrs.evolve(
        run,
        status="running",
        lease_owner=owner,
        fence=run.fence + 1,
        due_at=at + lease,
        updated_at=at,
    )


def renewed(
    run: WorkflowRun | None, run_id: str, fence: int, *, lease: float, at: float
) -> WorkflowRun:
    """The lease of the claim ``fence`` extended to ``lease`` seconds from
    ``at`` (WorkflowLeaseLost if it no longer holds it)."""
    return attrs.evolve(check_held(run, run_id, fence, at), due_at=at + lease)


def stepped(run: WorkflowRun | None, run_id: str, fence: int, at: float) -> WorkflowRun:
    """The run after the claim ``fence`` wrote a step at ``at``: its
    ``updated_at`` shows the progress (WorkflowLeaseLost if the claim no
    longer holds the lease)."""
    return attrs.evolve(check_held(run, run_id, fence, at), updated_at=at)


def suspended(
    run: WorkflowRun | None,
    run_id: str,
    fence: int,
    *,
    until: float | None,
    wakes: int,
    current_step: str | None,
    at: float,
) -> WorkflowRun:
    """The lease released, due at ``until``, or at once if the run was woken
    since the engine read ``wakes``."""
    held_run = check_held(run, run_id, fence, at)
    return attrs.evolve(
        held_run,
        status="suspended",
        lease_owner=None,
        due_at=at if held_run.wakes != wakes else until,
        current_step=current_step,
        updated_at=at,
    )


def released(
    run: WorkflowRun | None, run_id: str, fence: int, at: float
) -> WorkflowRun:
    """The lease of the claim ``fence`` given up: the run is due at once."""
    return attrs.evolve(
        check_held(run, run_id, fence, at),
        status="suspended",
        lease_owner=None,
        due_at=at,
        updated_at=at,
    )


def woken(run: WorkflowRun | None, at: float) -> WorkflowRun | None:
    """One more wake; due at once unless leased (the lease keeps its deadline
    and the engine sees the wake count when it suspends)."""
    if run is None or run.status not in WORKFLOW_ACTIVE:
        return None
    leased = run.lease_owner is not None and (run.due_at or 0.0) > at
    due = run.due_at if leased else min(run.due_at or at, at)
    return attrs.evolve(run, wakes=run.wakes + 1, due_at=due)


def finished(
    run: WorkflowRun | None,
    run_id: str,
    fence: int,
    *,
    status: str,
    result: Any,
    error: ErrorInfo | None,
    at: float,
) -> WorkflowRun:
    """The final record, if the claim ``fence`` holds the lease."""
    check_final(status)
    return attrs.evolve(
        check_held(run, run_id, fence, at),
        status=status,
        result=result,
        error=error,
        lease_owner=None,
        due_at=None,
        updated_at=at,
    )


def cancelling(run: WorkflowRun | None, at: float) -> WorkflowRun | None:
    """An active run marked for cancellation and woken."""
    if run is None or run.status not in WORKFLOW_ACTIVE:
        return None
    return woken(attrs.evolve(run, cancel_requested=True), at)


def check_sendable(run: WorkflowRun | None, run_id: str) -> WorkflowRun:
    """``run`` if an event may be sent to it: it exists and is active
    (:class:`UnknownWorkflow` otherwise: a final run takes no more events)."""
    if run is None:
        raise UnknownWorkflow(f"no workflow run with id {run_id!r}")
    if run.status not in WORKFLOW_ACTIVE:
        raise UnknownWorkflow(
            f"workflow run {run_id!r} is {run.status}: it takes no more events"
        )
    return run


def resolvable(run: WorkflowRun | None) -> bool:
    """An event may resolve a watcher of ``run``: it is active (a final run's
    steps never change)."""
    return run is not None and run.status in WORKFLOW_ACTIVE


def resolved(step: WorkflowStep, payload: str | bytes, at: float) -> WorkflowStep:
    """A waiting step done with the event ``payload`` (JSON)."""
    return attrs.evolve(step, status="done", value=loads(payload), finished_at=at)
