"""Durable workflows on the in-memory backend, under Trio's MockClock."""

from __future__ import annotations

from typing import Any

import pytest
import trio

import stem
from stem._wfcontext import WorkflowContext

DAY = 24 * 3600.0


def order_app(log: list[str]) -> stem.App:
    """The seed's order.process: validate, charge, sleep 24 hours, ship."""

    @stem.task("order.charge")
    async def charge(ctx: stem.TaskContext, args: dict[str, Any]) -> dict[str, Any]:
        log.append(f"charge {args['order']}")
        return {"charged": args["amount"]}

    @stem.task("order.ship")
    async def ship(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
        log.append(f"ship {args['order']}")
        return f"shipped {args['order']}"

    async def process(wf: WorkflowContext) -> dict[str, Any]:
        order = wf.params["order"]

        def validate() -> bool:
            log.append(f"validate {order}")
            return True

        await wf.step("validate", validate)
        charged = await wf.activity(
            "order.charge", args={"order": order, "amount": wf.params["amount"]}
        )
        started = wf.now()
        await wf.sleep(DAY)
        tracking = await wf.activity("order.ship", args={"order": order})
        return {"charged": charged, "tracking": tracking, "slept_from": started}

    return stem.App(
        tasks=[charge, ship],
        workflows=[stem.WorkflowScript("order.process", process)],
    )


async def test_order_process_sleeps_a_day_in_mock_time(autojump_clock: Any) -> None:
    """order.process validates, charges, sleeps 24 h durably and ships, each
    step once, in milliseconds of real time."""
    log: list[str] = []
    async with stem.Client.in_memory(app=order_app(log)) as client, client.worker():
        t0 = trio.current_time()
        run_id = await client.workflows.start(
            "order.process", params={"order": "A1", "amount": 30}
        )
        run = await client.workflows.wait(run_id, timeout=2 * DAY)
        elapsed = trio.current_time() - t0
    assert run.status == "completed"
    assert run.result["charged"] == {"charged": 30}
    assert run.result["tracking"] == "shipped A1"
    assert log == ["validate A1", "charge A1", "ship A1"]
    assert DAY <= elapsed < DAY + 60
    assert [s.kind for s in run.history] == [
        "step",
        "activity",
        "now",
        "sleep",
        "activity",
    ]
    assert all(s.status == "done" for s in run.history)


async def test_sleeping_run_holds_no_worker_slot(autojump_clock: Any) -> None:
    """While a run sleeps it is suspended in the store, and ordinary tasks run
    on a worker with a single slot."""

    @stem.task("t.echo")
    async def echo(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
        return int(args["n"])

    async def nap(wf: WorkflowContext) -> str:
        await wf.sleep(3600)
        return "rested"

    app = stem.App(tasks=[echo], workflows=[stem.WorkflowScript("nap", nap)])
    async with stem.Client.in_memory(app=app) as client, client.worker(concurrency=1):
        run_id = await client.workflows.start("nap")
        await trio.sleep(10)
        run = await client.workflows.get(run_id)
        assert run is not None
        assert run.status == "suspended"
        assert run.lease_owner is None
        assert run.current_step == "0:sleep:sleep"
        task_id = await client.enqueue("t.echo", args={"n": 7})
        assert (await client.wait_for(task_id, timeout=5)).value == 7
        assert (await client.workflows.wait(run_id, timeout=7200)).result == "rested"


def event_app() -> stem.App:
    async def approval(wf: WorkflowContext) -> Any:
        first = await wf.step("prepare", lambda: "ready")
        decision = await wf.wait_for_event("approved", timeout=wf.params.get("timeout"))
        return {"first": first, "decision": decision}

    return stem.App(workflows=[stem.WorkflowScript("approval", approval)])


async def test_event_sent_before_the_wait_is_delivered(autojump_clock: Any) -> None:
    """send() to a run not yet waiting keeps the event until it waits."""
    async with stem.Client.in_memory(app=event_app()) as client:
        run_id = await client.workflows.start("approval", params={})
        await client.workflows.send(run_id, "approved", {"by": "ann"})
        async with client.worker():
            run = await client.workflows.wait(run_id, timeout=60)
    assert run.result == {"first": "ready", "decision": {"by": "ann"}}


async def test_event_emitted_after_the_wait_starts_resumes_the_run(
    autojump_clock: Any,
) -> None:
    """emit() wakes the run waiting on the topic with the payload; an emit
    before anyone waits reaches nobody."""
    async with stem.Client.in_memory(app=event_app()) as client, client.worker():
        assert await client.workflows.emit("approved", "too early") == []
        run_id = await client.workflows.start("approval", params={})
        await trio.sleep(5)
        assert (await client.workflows.get(run_id)).status == "suspended"  # type: ignore[union-attr]
        assert await client.workflows.emit("approved", {"by": "bob"}) == [run_id]
        run = await client.workflows.wait(run_id, timeout=60)
        assert run.result["decision"] == {"by": "bob"}
        # A second emit finds no watcher: each one is resolved exactly once.
        assert await client.workflows.emit("approved", "again") == []


async def test_wait_for_event_timeout_raises_in_the_script(autojump_clock: Any) -> None:
    """wait_for_event(timeout=) raises WorkflowTimeout after the timeout and
    the run fails with it; a later event changes nothing."""
    async with stem.Client.in_memory(app=event_app()) as client, client.worker():
        t0 = trio.current_time()
        run_id = await client.workflows.start("approval", params={"timeout": 600})
        with pytest.raises(stem.WorkflowTimeout):
            await client.workflows.wait(run_id, timeout=3600)
        assert 600 <= trio.current_time() - t0 < 700
        assert await client.workflows.emit("approved", "late") == []
        run = await client.workflows.get(run_id)
    assert run is not None
    assert run.status == "failed"
    assert run.history[-1].error is not None
    assert run.history[-1].error.type == "stem.WorkflowTimeout"


async def test_timeout_can_be_caught_by_the_script(autojump_clock: Any) -> None:
    """A script catching WorkflowTimeout continues, and replays the same way."""

    async def patient(wf: WorkflowContext) -> str:
        try:
            await wf.wait_for_event("ping", timeout=30)
        except stem.WorkflowTimeout:
            await wf.sleep(10)
            return "gave up"
        return "pinged"

    app = stem.App(workflows=[stem.WorkflowScript("patient", patient)])
    async with stem.Client.in_memory(app=app) as client, client.worker():
        run_id = await client.workflows.start("patient")
        run = await client.workflows.wait(run_id, timeout=600)
    assert run.result == "gave up"
    assert [s.status for s in run.history] == ["failed", "done"]


async def test_cancel_during_a_sleep(autojump_clock: Any) -> None:
    """cancel() stops a sleeping run at once: wait raises WorkflowCancelled
    and the rest of the script never runs."""
    ran: list[str] = []

    async def long_nap(wf: WorkflowContext) -> None:
        await wf.sleep(DAY)
        await wf.step("after", lambda: ran.append("after"))

    app = stem.App(workflows=[stem.WorkflowScript("long_nap", long_nap)])
    async with stem.Client.in_memory(app=app) as client, client.worker():
        run_id = await client.workflows.start("long_nap")
        await trio.sleep(60)
        t0 = trio.current_time()
        assert await client.workflows.cancel(run_id) is True
        with pytest.raises(stem.WorkflowCancelled):
            await client.workflows.wait(run_id, timeout=DAY)
        assert trio.current_time() - t0 < 5
        assert await client.workflows.cancel(run_id) is False
    assert ran == []


async def test_non_determinism_is_detected_naming_the_step(
    autojump_clock: Any,
) -> None:
    """A script that takes a different step than its history fails the run
    with NonDeterminismError naming the step."""
    flip = {"changed": False}

    async def fickle(wf: WorkflowContext) -> str:
        await wf.step("one", lambda: 1)
        if flip["changed"]:
            await wf.step("two-renamed", lambda: 2)
        else:
            await wf.sleep(100)
        return "done"

    app = stem.App(workflows=[stem.WorkflowScript("fickle", fickle)])
    async with stem.Client.in_memory(app=app) as client, client.worker():
        run_id = await client.workflows.start("fickle")
        await trio.sleep(10)
        flip["changed"] = True
        with pytest.raises(stem.WorkflowFailed) as info:
            await client.workflows.wait(run_id, timeout=600)
    assert info.value.error is not None
    assert info.value.error.type == "stem.NonDeterminismError"
    assert "step 1" in info.value.error.message
    assert "two-renamed" in info.value.error.message


async def test_runs_of_an_older_version_are_reported(autojump_clock: Any) -> None:
    """A run started under version 1 is reported as version-mismatch by an
    engine running version 2, never replayed with the new code."""
    replayed: list[int] = []

    def versioned(version: int) -> stem.WorkflowScript:
        async def fn(wf: WorkflowContext) -> int:
            replayed.append(version)
            await wf.sleep(100)
            return version

        return stem.WorkflowScript("versioned", fn, version=version)

    async with stem.Client.in_memory(workflows=[versioned(1)]) as old:
        async with old.worker():
            run_id = await old.workflows.start("versioned")
            await trio.sleep(10)
        backend = old.backend
        async with (
            stem.Client(backend=backend, workflows=[versioned(2)]) as new,
            new.worker(),
        ):
            with pytest.raises(stem.WorkflowVersionMismatch):
                await new.workflows.wait(run_id, timeout=600)
            run = await new.workflows.get(run_id)
    assert run is not None
    assert run.status == "version-mismatch"
    assert replayed == [1]


async def test_child_workflow_result_returns_to_the_parent(
    autojump_clock: Any,
) -> None:
    """wf.child starts a child run and the parent resumes with its result; a
    failing child raises ChildWorkflowFailed in the parent."""

    async def child(wf: WorkflowContext) -> int:
        await wf.sleep(30)
        if wf.params["n"] < 0:
            raise ValueError("negative")
        return int(wf.params["n"]) * 2

    async def parent(wf: WorkflowContext) -> Any:
        doubled = await wf.child("child", {"n": 21})
        try:
            await wf.child("child", {"n": -1})
        except stem.ChildWorkflowFailed as exc:
            return {"doubled": doubled, "error": exc.error.type}
        return None

    app = stem.App(
        workflows=[
            stem.WorkflowScript("child", child),
            stem.WorkflowScript("parent", parent),
        ]
    )
    async with stem.Client.in_memory(app=app) as client, client.worker():
        run_id = await client.workflows.start("parent")
        run = await client.workflows.wait(run_id, timeout=600)
        children = await client.workflows.list(parent_id=run_id)
    assert run.result == {"doubled": 42, "error": "ValueError"}
    assert [c.run_id for c in children] == [f"{run_id}:0", f"{run_id}:1"]
    assert [c.status for c in children] == ["completed", "failed"]


async def test_two_engines_never_drive_one_run(autojump_clock: Any) -> None:
    """Two engines on one backend claim runs with a lease: every step of
    every run executes once."""
    counts: dict[str, int] = {}

    async def count(wf: WorkflowContext) -> None:
        def bump(key: str) -> None:
            counts[key] = counts.get(key, 0) + 1

        for i in range(3):
            await wf.step(f"s{i}", lambda i=i: bump(f"{wf.run_id}:{i}"))
            await wf.sleep(5)

    app = stem.App(workflows=[stem.WorkflowScript("count", count)])
    async with stem.Client.in_memory(app=app) as one:
        async with stem.Client(backend=one.backend, app=app) as two:
            async with one.worker(worker_id="w1"), two.worker(worker_id="w2"):
                ids = [await one.workflows.start("count") for _ in range(20)]
                for run_id in ids:
                    await one.workflows.wait(run_id, timeout=600)
    assert len(counts) == 60
    assert set(counts.values()) == {1}


async def test_failed_activity_raises_activity_failed(autojump_clock: Any) -> None:
    """An activity that fails after its retries raises ActivityFailed in the
    script; left uncaught it fails the run with WorkflowFailed."""

    @stem.task("t.bad", max_retries=1)
    async def bad(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        raise RuntimeError("nope")

    async def uses_bad(wf: WorkflowContext) -> None:
        await wf.activity("t.bad")

    app = stem.App(tasks=[bad], workflows=[stem.WorkflowScript("uses_bad", uses_bad)])
    async with stem.Client.in_memory(app=app) as client, client.worker():
        run_id = await client.workflows.start("uses_bad")
        with pytest.raises(stem.WorkflowFailed) as info:
            await client.workflows.wait(run_id, timeout=600)
    assert info.value.error is not None
    assert info.value.error.type == "stem.ActivityFailed"
    assert "nope" in info.value.error.message


async def test_max_duration_fails_an_overdue_run(autojump_clock: Any) -> None:
    """A run still sleeping past max_duration fails with WorkflowTimeout."""

    async def slow(wf: WorkflowContext) -> None:
        await wf.sleep(DAY)

    script = stem.WorkflowScript("slow", slow, max_duration=3600)
    async with stem.Client.in_memory(workflows=[script]) as client, client.worker():
        t0 = trio.current_time()
        run_id = await client.workflows.start("slow")
        with pytest.raises(stem.WorkflowTimeout):
            await client.workflows.wait(run_id, timeout=2 * DAY)
        assert 3600 <= trio.current_time() - t0 < 3700


async def test_now_and_uuid_are_stable_across_replays(autojump_clock: Any) -> None:
    """wf.now() and wf.uuid() return their recorded values on every replay."""
    seen: list[tuple[float, str]] = []

    async def stamps(wf: WorkflowContext) -> list[Any]:
        at, ident = wf.now(), wf.uuid()
        seen.append((at, ident))
        await wf.sleep(50)
        await wf.sleep(50)
        return [at, ident]

    app = stem.App(workflows=[stem.WorkflowScript("stamps", stamps)])
    async with stem.Client.in_memory(app=app) as client, client.worker():
        run_id = await client.workflows.start("stamps")
        run = await client.workflows.wait(run_id, timeout=600)
    assert len(seen) == 3
    assert len(set(seen)) == 1
    assert run.result == list(seen[0])


async def test_bad_input_is_rejected_at_start() -> None:
    """Bad definitions, unknown names, unencodable params and duplicate ids
    raise clear errors and store nothing."""

    async def fn(wf: WorkflowContext) -> None:
        return None

    def sync_fn(wf: WorkflowContext) -> None:
        return None

    with pytest.raises(TypeError, match="async def"):
        stem.WorkflowScript("x", sync_fn)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="version"):
        stem.WorkflowScript("x", fn, version=0)
    with pytest.raises(ValueError, match="max_duration"):
        stem.WorkflowScript("x", fn, max_duration=-1)
    app = stem.App(workflows=[stem.WorkflowScript("ok", fn)])
    async with stem.Client.in_memory(app=app) as client:
        with pytest.raises(stem.UnknownWorkflow, match="ok"):
            await client.workflows.start("missing")
        with pytest.raises(stem.EncodeError, match="params"):
            await client.workflows.start("ok", params={"x": object()})
        assert await client.workflows.list() == []
        await client.workflows.start("ok", run_id="r1")
        with pytest.raises(stem.DuplicateWorkflowRun):
            await client.workflows.start("ok", run_id="r1")
        with pytest.raises(stem.UnknownWorkflow):
            await client.workflows.send("nope", "t", 1)
        with pytest.raises(ValueError, match="status"):
            await client.workflows.list(status="bogus")
        assert [r.run_id for r in await client.workflows.list(status="pending")] == [
            "r1"
        ]


async def test_signals_follow_the_run(autojump_clock: Any) -> None:
    """A run emits started, suspended, resumed and completed signals."""

    async def napper(wf: WorkflowContext) -> int:
        await wf.sleep(10)
        return 1

    app = stem.App(workflows=[stem.WorkflowScript("napper", napper)])
    seen: list[str] = []
    for name in (
        "workflow_started",
        "workflow_suspended",
        "workflow_resumed",
        "workflow_completed",
    ):
        app.signals.connect(name, lambda event: seen.append(event.signal))
    async with stem.Client.in_memory(app=app) as client, client.worker():
        run_id = await client.workflows.start("napper")
        await client.workflows.wait(run_id, timeout=60)
        await trio.sleep(1)
    assert seen == [
        "workflow_started",
        "workflow_suspended",
        "workflow_resumed",
        "workflow_completed",
    ]
