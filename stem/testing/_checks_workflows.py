"""Contract checks for the WorkflowStore: runs, steps, leases, timers, events.

See :mod:`stem.testing._checks_broker` for the conventions.
"""

from __future__ import annotations

from typing import Any

import trio

import stem
from stem import ErrorInfo
from stem.contracts import WorkflowRun, WorkflowStep, WorkflowStore

from ._harness import Harness

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
    error = ErrorInfo(type="ValueError", message="bad", traceback="tb")
    for index in (2, 0, 1):
        await store.save_step(_step("r", index, meta={"i": index}))
    await store.save_step(_step("r", 1, status="done", value={"ok": [1.5, None]}))
    await store.save_step(_step("r", 2, status="failed", error=error))
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
    """A due run is leased to one owner; nobody else gets it until the lease
    passes; renew and suspend work only for the holder."""
    store = _store(h)
    await store.create_run(_run("r"))
    await store.create_run(_run("other", workflow="wf.other"))
    first = await store.claim("e1", names=NAMES, lease=2.0, limit=5)
    assert [r.run_id for r in first] == ["r"]
    assert first[0].status == "running"
    assert first[0].lease_owner == "e1"
    assert await store.claim("e2", names=NAMES, lease=2.0) == []
    assert not await store.renew("r", "e2", lease=2.0)
    await h.advance(1.0)
    assert await store.renew("r", "e1", lease=2.0)
    await h.advance(1.5)
    assert await store.claim("e2", names=NAMES, lease=2.0) == []
    await h.advance(1.0)
    second = await store.claim("e2", names=NAMES, lease=2.0)
    assert [r.run_id for r in second] == ["r"]
    assert not await store.suspend("r", "e1", until=None, wakes=first[0].wakes)
    assert await store.suspend("r", "e2", until=None, wakes=second[0].wakes)
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
    await store.suspend("timer", "e", until=until, wakes=claimed["timer"].wakes)
    await store.suspend(
        "waiter", "e", until=None, wakes=claimed["waiter"].wakes, current_step="0:x"
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
    assert await store.suspend("r", "e", until=None, wakes=claimed.wakes)
    again = await store.claim("e2", names=NAMES, lease=5)
    assert [r.run_id for r in again] == ["r"]
    assert await store.suspend("r", "e2", until=None, wakes=again[0].wakes)
    assert await store.claim("e2", names=NAMES, lease=5) == []


async def check_workflow_emit_resolves_watchers_once(h: Harness) -> None:
    """emit resolves every watcher on its topic exactly once (even with
    concurrent emits): the step becomes done with the payload, the run is
    woken; unwatch reports whether the watcher was still unresolved."""
    store = _store(h)
    for run_id in ("a", "b", "c"):
        await store.create_run(_run(run_id))
        await store.save_step(_step(run_id, 0, kind="event", name="go"))
    claimed = await store.claim("e", names=NAMES, lease=5, limit=3)
    for run in claimed:
        await store.suspend(run.run_id, "e", until=None, wakes=run.wakes)
    assert not await store.watch("a", 0, "go")
    assert not await store.watch("b", 0, "go")
    assert not await store.watch("b", 0, "go")  # idempotent
    assert not await store.watch("c", 0, "other")
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
        assert await store.watch(run_id, 0, "go")  # already done
        assert not await store.unwatch(run_id, 0)
    due = {r.run_id for r in await store.claim("e", names=NAMES, lease=5, limit=3)}
    assert due == {"a", "b"}
    assert await store.emit("go", "late") == []
    assert await store.unwatch("c", 0)
    assert await store.emit("other", 1) == []


async def check_workflow_send_waits_in_the_mailbox(h: Harness) -> None:
    """send to a run that is not waiting is kept and taken (oldest first) by
    its next watch on that topic; send to a waiting run resolves it now."""
    store = _store(h)
    await store.create_run(_run("r"))
    assert not await store.send("r", "go", {"k": 1})
    assert not await store.send("r", "go", {"k": 2})
    assert not await store.send("r", "else", "x")
    await store.save_step(_step("r", 0, kind="event", name="go"))
    assert await store.watch("r", 0, "go")
    first = await store.get_step("r", 0)
    assert first is not None
    assert first.value == {"k": 1}
    await store.save_step(_step("r", 1, kind="event", name="go"))
    assert await store.watch("r", 1, "go")
    second = await store.get_step("r", 1)
    assert second is not None
    assert second.value == {"k": 2}
    await store.save_step(_step("r", 2, kind="event", name="go"))
    assert not await store.watch("r", 2, "go")
    assert await store.send("r", "go", {"k": 3})
    third = await store.get_step("r", 2)
    assert third is not None
    assert (third.status, third.value) == ("done", {"k": 3})


async def check_workflow_finish_and_cancel(h: Harness) -> None:
    """finish records a final status only for the lease holder and wakes
    wait_run; request_cancel flags and wakes an active run, not a final one."""
    store = _store(h)
    await store.create_run(_run("r"))
    await store.create_run(_run("c"))
    claimed = {
        r.run_id: r for r in await store.claim("e", names=NAMES, lease=5, limit=2)
    }
    assert not await store.finish("r", "other", status="completed", result=1)
    async with trio.open_nursery() as nursery:
        pending = h.start(nursery, store.wait_run, "r", timeout=30)
        await h.settle()
        assert await store.finish("r", "e", status="completed", result={"v": [1]})
        await h.eventually(lambda: pending.done.is_set(), "wait_run woken")
    run = pending.result()
    assert run is not None
    assert (run.status, run.result) == ("completed", {"v": [1]})
    assert not await store.finish("r", "e", status="failed")
    assert not await store.request_cancel("r")
    assert not await store.request_cancel("missing")
    await store.suspend("c", "e", until=None, wakes=claimed["c"].wakes)
    assert await store.request_cancel("c")
    (flagged,) = await store.claim("e", names=NAMES, lease=5)
    assert flagged.cancel_requested
    error = ErrorInfo(type="stem.WorkflowCancelled", message="cancelled")
    assert await store.finish("c", "e", status="cancelled", error=error)
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
