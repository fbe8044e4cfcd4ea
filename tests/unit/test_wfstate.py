"""The pure workflow run rules every WorkflowStore backend shares."""

from __future__ import annotations

import pytest

import stem
from stem._wfstate import (
    ACTIVE_SQL,
    cancelling,
    check_final,
    check_held,
    check_sendable,
    claimed,
    finished,
    held,
    is_due,
    lease_problem,
    matches,
    released,
    renewed,
    resolvable,
    resolved,
    run_filters,
    stepped,
    suspended,
    version_filter,
    woken,
)
from stem.contracts import WORKFLOW_ACTIVE, WorkflowRun, WorkflowStep


def leased(owner: str = "e1", due_at: float = 130.0, fence: int = 3) -> WorkflowRun:
    return WorkflowRun(
        run_id="r1",
        workflow="wf",
        status="running",
        lease_owner=owner,
        due_at=due_at,
        fence=fence,
    )


def test_held_needs_the_current_token_an_unexpired_lease_and_an_active_run() -> None:
    """A lease is held by its claim's token until its deadline, while the run
    is active; every other case says why."""
    assert held(leased(), 3, 100.0)
    assert not held(leased(), 2, 100.0)
    assert not held(leased(due_at=100.0), 3, 100.0)
    assert not held(None, 3, 100.0)
    assert not held(WorkflowRun(run_id="r", workflow="wf", status="completed"), 0, 0)
    assert "claimed again" in (lease_problem(leased(), 2, 100.0) or "")
    assert "lease passed" in (lease_problem(leased(due_at=90.0), 3, 100.0) or "")
    assert "no such run" in (lease_problem(None, 3, 100.0) or "")
    parked = WorkflowRun(run_id="r", workflow="wf", status="suspended", fence=3)
    assert "released" in (lease_problem(parked, 3, 100.0) or "")
    with pytest.raises(stem.WorkflowLeaseLost, match="token 2 is stale") as info:
        check_held(leased(), "r1", 2, 100.0)
    assert (info.value.run_id, info.value.fence) == ("r1", 2)


def test_claim_leases_a_due_run_with_the_next_token() -> None:
    """A due run of a wanted workflow is claimed as running until at + lease,
    with a fencing token one higher than the last claim's."""
    run = WorkflowRun(run_id="r1", workflow="wf", due_at=90.0, fence=4)
    assert is_due(run, {"wf"}, 100.0)
    assert not is_due(run, {"other"}, 100.0)
    assert not is_due(run, {"wf"}, 80.0)
    taken = claimed(run, "e1", lease=30.0, at=100.0)
    assert (
        taken.status,
        taken.lease_owner,
        taken.due_at,
        taken.updated_at,
        taken.fence,
    ) == ("running", "e1", 130.0, 100.0, 5)


def test_max_versions_leave_newer_runs_alone() -> None:
    """A run newer than the engine's highest version of its workflow is not
    due for it; older runs and unnamed workflows are."""
    v3 = WorkflowRun(run_id="r", workflow="wf", version=3, due_at=1.0)
    assert not is_due(v3, {"wf"}, 2.0, {"wf": 2})
    assert is_due(v3, {"wf"}, 2.0, {"wf": 3})
    assert is_due(v3, {"wf"}, 2.0, {"other": 1})
    assert is_due(v3, {"wf"}, 2.0)
    assert version_filter(["wf", "b"], {"wf": 2}) == [("wf", 2), ("b", None)]


def test_renew_and_suspend_only_for_the_current_token() -> None:
    """Only the current claim renews or suspends; a wake since the engine's
    read makes the suspended run due at once."""
    with pytest.raises(stem.WorkflowLeaseLost):
        renewed(leased(), "r1", 2, lease=5.0, at=100.0)
    assert renewed(leased(), "r1", 3, lease=5.0, at=100.0).due_at == 105.0
    kwargs = {"until": 500.0, "current_step": "s", "at": 100.0}
    calm = suspended(leased(), "r1", 3, wakes=0, **kwargs)  # type: ignore[arg-type]
    assert (calm.status, calm.lease_owner, calm.due_at) == ("suspended", None, 500.0)
    woke = suspended(leased(), "r1", 3, wakes=-1, **kwargs)  # type: ignore[arg-type]
    assert woke.due_at == 100.0
    with pytest.raises(stem.WorkflowLeaseLost):
        suspended(leased(), "r1", 4, wakes=0, **kwargs)  # type: ignore[arg-type]


def test_release_and_step_writes() -> None:
    """A release leaves the run due at once and unleased; a step write moves
    updated_at; both need the current token."""
    free = released(leased(), "r1", 3, 100.0)
    assert (free.status, free.lease_owner, free.due_at) == ("suspended", None, 100.0)
    assert stepped(leased(), "r1", 3, 120.0).updated_at == 120.0
    with pytest.raises(stem.WorkflowLeaseLost):
        stepped(leased(), "r1", 1, 120.0)
    with pytest.raises(stem.WorkflowLeaseLost):
        released(free, "r1", 3, 101.0)


def test_wake_keeps_a_live_lease_deadline() -> None:
    """A wake counts on a leased run without moving its lease; otherwise the
    run becomes due at once; final runs are not woken."""
    run = woken(leased(), 100.0)
    assert run is not None and (run.wakes, run.due_at) == (1, 130.0)
    idle = woken(WorkflowRun(run_id="r", workflow="wf", status="suspended"), 100.0)
    assert idle is not None and idle.due_at == 100.0
    assert woken(WorkflowRun(run_id="r", workflow="wf", status="failed"), 1.0) is None


def test_finish_and_cancel() -> None:
    """Finishing clears the lease; a stale token cannot finish; a cancel
    request marks and wakes an active run."""
    with pytest.raises(ValueError, match="not a final workflow status"):
        check_final("running")
    done = finished(leased(), "r1", 3, status="completed", result=1, error=None, at=100)
    assert (done.status, done.due_at) == ("completed", None)
    with pytest.raises(stem.WorkflowLeaseLost, match="is completed"):
        finished(done, "r1", 3, status="failed", result=None, error=None, at=101)
    with pytest.raises(stem.WorkflowLeaseLost):
        finished(leased(), "r1", 9, status="failed", result=None, error=None, at=1)
    assert cancelling(None, 1.0) is None
    cancel = cancelling(leased(), 100.0)
    assert cancel is not None and cancel.cancel_requested and cancel.wakes == 1


def test_final_runs_take_no_events() -> None:
    """Sending to an unknown or final run raises UnknownWorkflow; an event
    resolves watchers of active runs only."""
    with pytest.raises(stem.UnknownWorkflow, match="no workflow run"):
        check_sendable(None, "x")
    done = WorkflowRun(run_id="r", workflow="wf", status="cancelled")
    with pytest.raises(stem.UnknownWorkflow, match="is cancelled"):
        check_sendable(done, "r")
    assert check_sendable(leased(), "r1") == leased()
    assert not resolvable(done)
    assert not resolvable(None)
    assert resolvable(leased())


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
