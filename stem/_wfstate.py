"""The rules of a workflow run's life, shared by every WorkflowStore backend.

Pure functions on :class:`~stem.contracts.WorkflowRun` and
:class:`~stem.contracts.WorkflowStep` records: no I/O, no clock (the time of
a change is passed in as ``at``). A backend reads the records, asks one of
these what the new record is (None: the change does not apply) and writes it
with its own atomic read-modify-write (a transaction, WATCH/MULTI, or no
``await`` in the middle), so the stores agree by construction.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import attrs

from ._codec import loads
from ._result import ErrorInfo
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


def held(run: WorkflowRun | None, owner: str, at: float) -> bool:
    """``owner`` holds an unexpired lease on the active ``run`` at ``at``."""
    return (
        run is not None
        and run.lease_owner == owner
        and run.due_at is not None
        and run.due_at > at
        and run.status in WORKFLOW_ACTIVE
    )


def drivable(run: WorkflowRun, names: Collection[str]) -> bool:
    """``run`` is active and of one of the workflows ``names``."""
    return run.status in WORKFLOW_ACTIVE and run.workflow in names


def is_due(run: WorkflowRun, names: Collection[str], at: float) -> bool:
    """``run`` may be claimed at ``at`` by an engine driving ``names``."""
    return drivable(run, names) and run.due_at is not None and run.due_at <= at


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
    """``run`` (found due) leased to ``owner`` for ``lease`` seconds."""
    return attrs.evolve(
        run, status="running", lease_owner=owner, due_at=at + lease, updated_at=at
    )


def renewed(
    run: WorkflowRun | None, owner: str, *, lease: float, at: float
) -> WorkflowRun | None:
    """``owner``'s lease extended to ``lease`` seconds from ``at``."""
    if run is None or not held(run, owner, at):
        return None
    return attrs.evolve(run, due_at=at + lease)


def suspended(
    run: WorkflowRun | None,
    owner: str,
    *,
    until: float | None,
    wakes: int,
    current_step: str | None,
    at: float,
) -> WorkflowRun | None:
    """The lease released, due at ``until``, or at once if the run was woken
    since the engine read ``wakes``."""
    if run is None or not held(run, owner, at):
        return None
    return attrs.evolve(
        run,
        status="suspended",
        lease_owner=None,
        due_at=at if run.wakes != wakes else until,
        current_step=current_step,
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
    owner: str,
    *,
    status: str,
    result: Any,
    error: ErrorInfo | None,
    at: float,
) -> WorkflowRun | None:
    """The final record, if ``owner`` holds the lease."""
    if run is None or not held(run, owner, at):
        return None
    return attrs.evolve(
        run,
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


def resolved(step: WorkflowStep, payload: str | bytes, at: float) -> WorkflowStep:
    """A waiting step done with the event ``payload`` (JSON)."""
    return attrs.evolve(step, status="done", value=loads(payload), finished_at=at)
