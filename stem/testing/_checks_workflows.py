"""Contract checks for the WorkflowStore: runs, steps, leases, timers, events.

See :mod:`stem.testing._checks_broker` for the conventions.
"""

from __future__ import annotations

from typing import Any

import trio

import stem
from stem import ErrorInfo
from stem.contracts import WorkflowRun, WorkflowStep, WorkflowStore

from ._harness import Harness, raises

NAMES = ["wf.a"]


def _store(h: Harness) -> WorkflowStore:
    store = h.backend.workflows
    assert isinstance(store, WorkflowStore)
    return store


def _run(run_id: str, *, workflow: str = "wf.a", **kw: Any) -> WorkflowRun:
    at = stem.now()
    fields: dict[str, Any] = {"created_at": at, "updated_at": at, "due_at": at}
    fields.update(kw)
    return WorkflowRun(run_id=run_id, workflow=workflow, **fields)


def _step(run_id: str, index: int, **kw: Any) -> WorkflowStep:
    fields: dict[str, Any] = {"kind": "step", "name": f"s{index}"}
    fields.update(kw)
    return WorkflowStep(run_id=run_id, index=index, started_at=stem.now(), **fields)


async def check_workflow_create_get_list(h: Harness) -> None:
    """create_run stores a run once (a duplicate id is rejected and changes
    nothing); list_runs filters by workflow, status and parent, oldest first."""
    store = _store(h)
    assert await store.create_run(_run("r1", params={"n": [1, "x"]}, version=3))
    await h.advance(0.01)
    assert await store.create_run(_run("r2", workflow="wf.b", parent_id="r1"))
    assert not await store.create_run(_run("r1", params={"n": 2}))
    got = await store.get_run("r1")
    assert got is not None
    assert (got.workflow, got.version, got.params, got.status) == (
        "wf.a",
        3,
        {"n": [1, "x"]},
        "pending",
    )
    assert await store.get_run("missing") is None
    assert [r.run_id for r in await store.list_runs()] == ["r1", "r2"]
    assert [r.run_id for r in await store.list_runs(workflow="wf.b")] == ["r2"]
    assert [r.run_id for r in await store.list_runs(parent_id="r1")] == ["r2"]
    assert [r.run_id for r in await store.list_runs(status="pending", limit=1)] == [
        "r1"
    ]
    assert [r.run_id for r in await store.list_runs(offset=1)] == ["r2"]
    assert await store.list_runs(status="completed") == []


async def check_workflow_steps_in_order(h: Harness) -> None:
    """save_step upserts by (run, index); list_steps returns index order."""
    store = _store(h)
    await store.create_run(_run("r"))
    (run,) = await store.claim("e", names=NAMES, lease=60)
    error = ErrorInfo(type="ValueError", message="bad", traceback="tb")
    for index in (2, 0, 1):
        await store.save_step(_step("r", index, meta={"i": index}), fence=run.fence)
    await store.save_step(
        _step("r", 1, status="done", value={"ok": [1.5, None]}), fence=run.fence
    )
    await store.save_step(_step("r", 2, status="failed", error=error), fence=run.fence)
    steps = await store.list_steps("r")
    assert [s.index for s in steps] == [0, 1, 2]
    assert steps[0].meta == {"i": 0}
    assert (steps[1].status, steps[1].value) == ("done", {"ok": [1.5, None]})
    assert (steps[2].status, steps[2].error) == ("failed", error)
    one = await store.get_step("r", 1)
    assert one is not None
    assert one.value == {"ok": [1.5, None]}
    assert await store.get_step("r", 9) is None
    assert await store.list_steps("other") == []


async def check_workflow_claim_with_lease(h: Harness) -> None:
    """A due run is leased to one owner with a fencing token; nobody else
    gets it until the lease passes; renew and suspend work only for the
    current claim's token."""
    store = _store(h)
    await store.create_run(_run("r"))
    await store.create_run(_run("other", workflow="wf.other"))
    first = await store.claim("e1", names=NAMES, lease=2.0, limit=5)
    assert [r.run_id for r in first] == ["r"]
    assert first[0].status == "running"
    assert first[0].lease_owner == "e1"
    assert await store.claim("e2", names=NAMES, lease=2.0) == []
    with raises(stem.WorkflowLeaseLost):
        await store.renew("r", first[0].fence + 1, lease=2.0)
    await h.advance(1.0)
    await store.renew("r", first[0].fence, lease=2.0)
    await h.advance(1.5)
    assert await store.claim("e2", names=NAMES, lease=2.0) == []
    await h.advance(1.0)
    second = await store.claim("e2", names=NAMES, lease=2.0)
    assert [r.run_id for r in second] == ["r"]
    assert second[0].fence > first[0].fence
    with raises(stem.WorkflowLeaseLost):
        await store.suspend("r", first[0].fence, until=None, wakes=first[0].wakes)
    await store.suspend("r", second[0].fence, until=None, wakes=second[0].wakes)
    run = await store.get_run("r")
    assert run is not None
    assert (run.status, run.lease_owner) == ("suspended", None)


async def check_workflow_suspend_until_and_next_due(h: Harness) -> None:
    """A run suspended until t is not claimable before t, is after it, and
    next_due reports t; a run suspended without a time waits for a wake."""
    store = _store(h)
    await store.create_run(_run("timer"))
    await store.create_run(_run("waiter"))
    claimed = {
        r.run_id: r for r in await store.claim("e", names=NAMES, lease=5, limit=2)
    }
    assert set(claimed) == {"timer", "waiter"}
    until = stem.now() + 3.0
    timer, waiting = claimed["timer"], claimed["waiter"]
    await store.suspend("timer", timer.fence, until=until, wakes=timer.wakes)
    await store.suspend(
        "waiter", waiting.fence, until=None, wakes=waiting.wakes, current_step="0:x"
    )
    due = await store.next_due(NAMES)
    assert due is not None
    assert abs(due - until) < 1e-3
    assert await store.next_due(["nothing"]) is None
    assert await store.claim("e", names=NAMES, lease=5, limit=2) == []
    await h.advance(3.1)
    assert [r.run_id for r in await store.claim("e", names=NAMES, lease=5)] == ["timer"]
    waiter = await store.get_run("waiter")
    assert waiter is not None
    assert waiter.current_step == "0:x"
    await store.wake(["waiter", "unknown"])
    assert [r.run_id for r in await store.claim("e", names=NAMES, lease=5)] == [
        "waiter"
    ]


async def check_workflow_wake_during_lease_is_kept(h: Harness) -> None:
    """A wake while the run is leased makes it due as soon as it is
    suspended, even if its driver asked to wait for a wake."""
    store = _store(h)
    await store.create_run(_run("r"))
    (claimed,) = await store.claim("e", names=NAMES, lease=5)
    await store.wake(["r"])
    assert await store.claim("e2", names=NAMES, lease=5) == []
    await store.suspend("r", claimed.fence, until=None, wakes=claimed.wakes)
    again = await store.claim("e2", names=NAMES, lease=5)
    assert [r.run_id for r in again] == ["r"]
    await store.suspend("r", again[0].fence, until=None, wakes=again[0].wakes)
    assert await store.claim("e2", names=NAMES, lease=5) == []


async def check_workflow_emit_resolves_watchers_once(h: Harness) -> None:
    """emit resolves every watcher on its topic exactly once (even with
    concurrent emits): the step becomes done with the payload, the run is
    woken; unwatch reports whether the watcher was still unresolved."""
    store = _store(h)
    for run_id in ("a", "b", "c"):
        await store.create_run(_run(run_id))
    claimed = {
        r.run_id: r for r in await store.claim("e", names=NAMES, lease=60, limit=3)
    }
    fence = {run_id: run.fence for run_id, run in claimed.items()}
    for run_id in ("a", "b", "c"):
        event = _step(run_id, 0, kind="event", name="go")
        await store.save_step(event, fence=fence[run_id])
    assert not await store.watch("a", 0, "go", fence=fence["a"])
    assert not await store.watch("b", 0, "go", fence=fence["b"])
    assert not await store.watch("b", 0, "go", fence=fence["b"])  # idempotent
    assert not await store.watch("c", 0, "other", fence=fence["c"])
    for run in claimed.values():
        await store.suspend(run.run_id, run.fence, until=None, wakes=run.wakes)
    results: list[list[str]] = []

    async def emit(payload: Any) -> None:
        results.append(await store.emit("go", payload))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(emit, {"n": 1})
        nursery.start_soon(emit, {"n": 2})
    assert sorted(run_id for r in results for run_id in r) == ["a", "b"]
    for run_id in ("a", "b"):
        step = await store.get_step(run_id, 0)
        assert step is not None
        assert step.status == "done"
        assert step.value in ({"n": 1}, {"n": 2})
    due = {r.run_id: r for r in await store.claim("e", names=NAMES, lease=5, limit=3)}
    assert set(due) == {"a", "b"}
    for run_id, run in due.items():
        assert await store.watch(run_id, 0, "go", fence=run.fence)  # already done
        assert not await store.unwatch(run_id, 0, fence=run.fence)
    assert await store.emit("go", "late") == []
    await store.wake(["c"])
    (c,) = await store.claim("e", names=NAMES, lease=5)
    assert await store.unwatch("c", 0, fence=c.fence)
    assert await store.emit("other", 1) == []


async def check_workflow_send_waits_in_the_mailbox(h: Harness) -> None:
    """send to a run that is not waiting is kept and taken (oldest first) by
    its next watch on that topic; send to a waiting run resolves it now."""
    store = _store(h)
    await store.create_run(_run("r"))
    assert not await store.send("r", "go", {"k": 1})
    assert not await store.send("r", "go", {"k": 2})
    assert not await store.send("r", "else", "x")
    (run,) = await store.claim("e", names=NAMES, lease=60)
    fence = run.fence
    await store.save_step(_step("r", 0, kind="event", name="go"), fence=fence)
    assert await store.watch("r", 0, "go", fence=fence)
    first = await store.get_step("r", 0)
    assert first is not None
    assert first.value == {"k": 1}
    await store.save_step(_step("r", 1, kind="event", name="go"), fence=fence)
    assert await store.watch("r", 1, "go", fence=fence)
    second = await store.get_step("r", 1)
    assert second is not None
    assert second.value == {"k": 2}
    await store.save_step(_step("r", 2, kind="event", name="go"), fence=fence)
    assert not await store.watch("r", 2, "go", fence=fence)
    assert await store.send("r", "go", {"k": 3})
    third = await store.get_step("r", 2)
    assert third is not None
    assert (third.status, third.value) == ("done", {"k": 3})
    with raises(stem.UnknownWorkflow):
        await store.send("missing", "go", 1)


async def check_workflow_finish_and_cancel(h: Harness) -> None:
    """finish records a final status only for the current claim and wakes
    wait_run; request_cancel flags and wakes an active run, not a final one."""
    store = _store(h)
    await store.create_run(_run("r"))
    await store.create_run(_run("c"))
    claimed = {
        r.run_id: r for r in await store.claim("e", names=NAMES, lease=5, limit=2)
    }
    r, c = claimed["r"], claimed["c"]
    with raises(stem.WorkflowLeaseLost):
        await store.finish("r", r.fence + 1, status="completed", result=1)
    async with trio.open_nursery() as nursery:
        pending = h.start(nursery, store.wait_run, "r", timeout=30)
        await h.settle()
        await store.finish("r", r.fence, status="completed", result={"v": [1]})
        await h.eventually(lambda: pending.done.is_set(), "wait_run woken")
    run = pending.result()
    assert run is not None
    assert (run.status, run.result) == ("completed", {"v": [1]})
    with raises(stem.WorkflowLeaseLost):
        await store.finish("r", r.fence, status="failed")
    assert not await store.request_cancel("r")
    assert not await store.request_cancel("missing")
    await store.suspend("c", c.fence, until=None, wakes=c.wakes)
    assert await store.request_cancel("c")
    (flagged,) = await store.claim("e", names=NAMES, lease=5)
    assert flagged.cancel_requested
    error = ErrorInfo(type="stem.WorkflowCancelled", message="cancelled")
    await store.finish("c", flagged.fence, status="cancelled", error=error)
    final = await store.get_run("c")
    assert final is not None
    assert (final.status, final.error) == ("cancelled", error)
    assert await store.next_due(NAMES) is None


async def check_workflow_wait_due_cursor(h: Harness) -> None:
    """wait_due returns at once for a stale cursor, and is woken by a change
    after the cursor was read."""
    store = _store(h)
    cursor = await store.wait_due(None, timeout=0)
    await store.create_run(_run("r"))
    with trio.fail_after(5):
        newer = await store.wait_due(cursor, timeout=60)
    assert newer != cursor
    async with trio.open_nursery() as nursery:
        pending = h.start(nursery, store.wait_due, newer, timeout=60)
        await h.settle()
        assert not pending.done.is_set()
        await store.wake(["r"])
        await h.eventually(lambda: pending.done.is_set(), "wait_due woken")
    assert pending.result() != newer


async def _stale_writes_refused(
    store: WorkflowStore, run_id: str, fence: int, *, index: int = 0
) -> None:
    """Every write of a drive presenting ``fence`` raises WorkflowLeaseLost."""
    step = _step(run_id, index, kind="event", name="go", value="stale")
    with raises(stem.WorkflowLeaseLost) as lost:
        await store.save_step(step, fence=fence)
    assert lost.value.run_id == run_id
    assert lost.value.fence == fence
    with raises(stem.WorkflowLeaseLost):
        await store.watch(run_id, index, "go", fence=fence)
    with raises(stem.WorkflowLeaseLost):
        await store.unwatch(run_id, index, fence=fence)
    with raises(stem.WorkflowLeaseLost):
        await store.renew(run_id, fence, lease=60)
    with raises(stem.WorkflowLeaseLost):
        await store.suspend(run_id, fence, until=None, wakes=0)
    with raises(stem.WorkflowLeaseLost):
        await store.release(run_id, fence)
    with raises(stem.WorkflowLeaseLost):
        await store.finish(run_id, fence, status="completed", result="stale")


async def check_workflow_fencing_same_owner_reclaim(h: Harness) -> None:
    """After a release and a re-claim by the same owner, every write of the
    earlier claim (step, watch, renew, suspend, release, finish) is refused
    with WorkflowLeaseLost and changes nothing; the new claim's writes work."""
    store = _store(h)
    await store.create_run(_run("r"))
    (first,) = await store.claim("e", names=NAMES, lease=60)
    await store.save_step(_step("r", 0, value="first"), fence=first.fence)
    await store.release("r", first.fence)
    (second,) = await store.claim("e", names=NAMES, lease=60)
    assert second.lease_owner == "e"
    assert second.fence > first.fence
    await _stale_writes_refused(store, "r", first.fence)
    run = await store.get_run("r")
    assert run is not None
    assert (run.status, run.lease_owner, run.fence) == ("running", "e", second.fence)
    assert [(s.index, s.value) for s in await store.list_steps("r")] == [(0, "first")]
    await store.save_step(_step("r", 1, value="second"), fence=second.fence)
    await store.renew("r", second.fence, lease=60)
    await store.finish("r", second.fence, status="completed", result="ok")
    done = await store.get_run("r")
    assert done is not None
    assert (done.status, done.result) == ("completed", "ok")


async def check_workflow_fencing_blocked_loop(h: Harness) -> None:
    """An engine whose loop was blocked past its lease re-claims its own run
    with a new token; the old drive's late writes are refused, so the run is
    never driven twice at once, and the step it wrote before keeps its value."""
    store = _store(h)
    await store.create_run(_run("r"))
    (old,) = await store.claim("e", names=NAMES, lease=2.0)
    await store.save_step(_step("r", 0, value="before"), fence=old.fence)
    await h.advance(3.0)  # the loop was blocked: no renewal
    with raises(stem.WorkflowLeaseLost) as lost:
        await store.renew("r", old.fence, lease=2.0)
    assert "lease passed" in lost.value.reason
    (new,) = await store.claim("e", names=NAMES, lease=60)
    assert new.fence > old.fence
    await _stale_writes_refused(store, "r", old.fence)
    step = await store.get_step("r", 0)
    assert step is not None
    assert step.value == "before"
    await store.save_step(_step("r", 0, value="after"), fence=new.fence)
    await store.suspend("r", new.fence, until=None, wakes=new.wakes)
    run = await store.get_run("r")
    assert run is not None
    assert (run.status, run.fence) == ("suspended", new.fence)


async def check_workflow_release_makes_due_at_once(h: Harness) -> None:
    """release gives the lease up: the run is due at once for any engine and
    the released token holds nothing any more."""
    store = _store(h)
    await store.create_run(_run("r"))
    (first,) = await store.claim("e1", names=NAMES, lease=600)
    await store.release("r", first.fence)
    run = await store.get_run("r")
    assert run is not None
    assert (run.lease_owner, run.status) == (None, "suspended")
    with raises(stem.WorkflowLeaseLost):
        await store.renew("r", first.fence, lease=600)
    (second,) = await store.claim("e2", names=NAMES, lease=600)
    assert (second.run_id, second.lease_owner) == ("r", "e2")


async def check_workflow_final_run_is_immutable(h: Harness) -> None:
    """Nothing changes a completed, failed or cancelled run: watch, step
    writes, suspend, renew, release and finish are refused, emit and wake
    pass it by, send raises UnknownWorkflow, cancel is False, and its record
    and steps stay as finish left them."""
    store = _store(h)
    error = ErrorInfo(type="RuntimeError", message="x")
    finals = {"done": "completed", "bad": "failed", "gone": "cancelled"}
    for run_id in finals:
        await store.create_run(_run(run_id))
    claimed = {
        r.run_id: r for r in await store.claim("e", names=NAMES, lease=60, limit=3)
    }
    for run_id, status in finals.items():
        fence = claimed[run_id].fence
        await store.save_step(_step(run_id, 0, kind="event", name="go"), fence=fence)
        assert not await store.watch(run_id, 0, "go", fence=fence)
        await store.finish(
            run_id,
            fence,
            status=status,
            result=1 if status == "completed" else None,
            error=None if status == "completed" else error,
        )
    before = {run_id: await store.get_run(run_id) for run_id in finals}
    steps = {run_id: await store.list_steps(run_id) for run_id in finals}
    await h.advance(5.0)
    for run_id in finals:
        await _stale_writes_refused(store, run_id, claimed[run_id].fence, index=1)
        with raises(stem.UnknownWorkflow):
            await store.send(run_id, "go", "late")
        assert not await store.request_cancel(run_id)
    assert await store.emit("go", "late") == []
    await store.wake(list(finals))
    assert await store.claim("e", names=NAMES, lease=60, limit=3) == []
    for run_id in finals:
        assert await store.get_run(run_id) == before[run_id]
        assert await store.list_steps(run_id) == steps[run_id]
        assert steps[run_id][0].status == "pending"


async def check_workflow_save_step_refreshes_updated_at(h: Harness) -> None:
    """save_step moves the run's updated_at to the time of the write, so a
    listing shows progress."""
    store = _store(h)
    await store.create_run(_run("r"))
    (run,) = await store.claim("e", names=NAMES, lease=600)
    await h.advance(5.0)
    await store.save_step(_step("r", 0, status="done", value=1), fence=run.fence)
    at = stem.now()
    stored = await store.get_run("r")
    assert stored is not None
    assert abs(stored.updated_at - at) < 1e-3
    assert stored.updated_at > run.updated_at + 4.0
    (listed,) = await store.list_runs()
    assert abs(listed.updated_at - at) < 1e-3


async def check_workflow_claim_respects_max_versions(h: Harness) -> None:
    """claim and next_due leave alone the runs newer than ``max_versions``
    allows for their workflow (an engine with newer code takes them), and
    apply no limit to a workflow not named there."""
    store = _store(h)
    newer_due = stem.now()
    await store.create_run(_run("v3", version=3))
    await h.advance(1.0)
    older_due = stem.now()
    await store.create_run(_run("v1", version=1))
    await store.create_run(_run("b2", workflow="wf.b", version=2))
    limit = {"wf.a": 2}
    due = await store.next_due(NAMES, max_versions=limit)
    assert due is not None
    assert abs(due - older_due) < 1e-3
    anyone = await store.next_due(NAMES)
    assert anyone is not None
    assert abs(anyone - newer_due) < 1e-3
    names = ["wf.a", "wf.b"]
    taken = await store.claim("old", names=names, lease=60, limit=5, max_versions=limit)
    assert sorted(r.run_id for r in taken) == ["b2", "v1"]
    assert await store.next_due(NAMES, max_versions=limit) is not None  # the lease
    rest = await store.claim("new", names=names, lease=60, limit=5)
    assert [r.run_id for r in rest] == ["v3"]


async def check_workflow_concurrent_claims_are_exclusive(h: Harness) -> None:
    """Engines claiming at the same moment never get the same run, and each
    run's token is the one its single claim returned."""
    store = _store(h)
    for i in range(12):
        await store.create_run(_run(f"r{i:02d}"))
    got: list[WorkflowRun] = []

    async def claim(owner: str) -> None:
        got.extend(await store.claim(owner, names=NAMES, lease=60, limit=12))

    async with trio.open_nursery() as nursery:
        for n in range(4):
            nursery.start_soon(claim, f"e{n}")
    assert sorted(r.run_id for r in got) == [f"r{i:02d}" for i in range(12)]
    for run in got:
        stored = await store.get_run(run.run_id)
        assert stored is not None
        assert (stored.lease_owner, stored.fence) == (run.lease_owner, run.fence)
