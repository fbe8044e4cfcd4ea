"""The pure workflow run rules every WorkflowStore backend shares."""

from __future__ import annotations

import pytest

from stem._wfstate import (
    ACTIVE_SQL,
    cancelling,
    check_final,
    claimed,
    finished,
    held,
    is_due,
    matches,
    renewed,
    resolved,
    run_filters,
    suspended,
    woken,
)
from stem.contracts import WORKFLOW_ACTIVE, WorkflowRun, WorkflowStep


def leased(owner: str = "e1", due_at: float = 130.0) -> WorkflowRun:
    return WorkflowRun(
        run_id="r1", workflow="wf", status="running", lease_owner=owner, due_at=due_at
    )


def test_held_needs_owner_unexpired_lease_and_active_status() -> None:
    """A lease is held by its owner until its deadline, while the run is active."""
    assert held(leased(), "e1", 100.0)
    assert not held(leased(), "e2", 100.0)
    assert not held(leased(due_at=100.0), "e1", 100.0)
    assert not held(None, "e1", 100.0)
    assert not held(WorkflowRun(run_id="r", workflow="wf", status="completed"), "", 0)


def test_claim_leases_a_due_run() -> None:
    """A due run of a wanted workflow is claimed as running until at + lease."""
    run = WorkflowRun(run_id="r1", workflow="wf", due_at=90.0)
    assert is_due(run, {"wf"}, 100.0)
    assert not is_due(run, {"other"}, 100.0)
    assert not is_due(run, {"wf"}, 80.0)
    taken = claimed(run, "e1", lease=30.0, at=100.0)
    assert (taken.status, taken.lease_owner, taken.due_at, taken.updated_at) == (
        "running",
        "e1",
        130.0,
        100.0,
    )


def test_renew_and_suspend_only_for_the_holder() -> None:
    """Only the lease holder renews or suspends; a wake since the engine's
    read makes the suspended run due at once."""
    assert renewed(leased(), "e2", lease=5.0, at=100.0) is None
    renewed_run = renewed(leased(), "e1", lease=5.0, at=100.0)
    assert renewed_run is not None and renewed_run.due_at == 105.0
    kwargs = {"until": 500.0, "current_step": "s", "at": 100.0}
    calm = suspended(leased(), "e1", wakes=0, **kwargs)  # type: ignore[arg-type]
    assert calm is not None
    assert (calm.status, calm.lease_owner, calm.due_at) == ("suspended", None, 500.0)
    woke = suspended(leased(), "e1", wakes=-1, **kwargs)  # type: ignore[arg-type]
    assert woke is not None and woke.due_at == 100.0


def test_wake_keeps_a_live_lease_deadline() -> None:
    """A wake counts on a leased run without moving its lease; otherwise the
    run becomes due at once; final runs are not woken."""
    run = woken(leased(), 100.0)
    assert run is not None and (run.wakes, run.due_at) == (1, 130.0)
    idle = woken(WorkflowRun(run_id="r", workflow="wf", status="suspended"), 100.0)
    assert idle is not None and idle.due_at == 100.0
    assert woken(WorkflowRun(run_id="r", workflow="wf", status="failed"), 1.0) is None


def test_finish_and_cancel() -> None:
    """Finishing clears the lease; a cancel request marks and wakes an active run."""
    with pytest.raises(ValueError, match="not a final workflow status"):
        check_final("running")
    done = finished(leased(), "e1", status="completed", result=1, error=None, at=100)
    assert done is not None and (done.status, done.due_at) == ("completed", None)
    stolen = finished(leased(), "e2", status="failed", result=None, error=None, at=1)
    assert stolen is None
    assert cancelling(None, 1.0) is None
    cancel = cancelling(leased(), 100.0)
    assert cancel is not None and cancel.cancel_requested and cancel.wakes == 1


def test_resolve_filters_and_sql() -> None:
    """An event resolves a step with its JSON payload; list filters match
    only the given fields; the SQL condition names every active status."""
    step = WorkflowStep(run_id="r1", index=2, kind="event", name="go")
    done = resolved(step, '{"ok": true}', 7.0)
    assert (done.status, done.value, done.finished_at) == ("done", {"ok": True}, 7.0)
    filters = run_filters(workflow="wf", status=None, parent_id="p")
    assert filters == [("workflow", "wf"), ("parent_id", "p")]
    assert matches(WorkflowRun(run_id="r", workflow="wf", parent_id="p"), filters)
    assert not matches(WorkflowRun(run_id="r", workflow="wf"), filters)
    assert all(f"'{status}'" in ACTIVE_SQL for status in WORKFLOW_ACTIVE)
