"""wf.gather: steps of one run at once, on the in-memory backend under
Trio's MockClock."""

from __future__ import annotations

from typing import Any

import pytest
import trio

import stem
from stem import TaskState, WorkflowContext


def quote_tasks(log: list[str]) -> list[Any]:
    """quote (sleeps ``secs``, returns ``who``) and boom (fails after ``secs``)."""

    @stem.task("quote")
    async def quote(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
        log.append(f"start {args['who']}")
        await trio.sleep(args["secs"])
        log.append(f"end {args['who']}")
        return str(args["who"])

    @stem.task("boom")
    async def boom(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        await trio.sleep(args.get("secs", 0))
        log.append("boom")
        raise ValueError("no room")

    return [quote, boom]


async def test_gather_runs_activities_at_once_in_argument_order(
    autojump_clock: Any,
) -> None:
    """Three activities of 10, 5 and 1 s finish in 10 s of clock; the values
    and the step numbers follow the argument order, not the finishing order."""
    log: list[str] = []

    async def quotes(wf: WorkflowContext) -> list[Any]:
        return await wf.gather(
            wf.activity("quote", args={"who": "a", "secs": 10}),
            wf.activity("quote", args={"who": "b", "secs": 5}),
            wf.activity("quote", args={"who": "c", "secs": 1}),
        )

    app = stem.App(
        tasks=quote_tasks(log), workflows=[stem.WorkflowScript("quotes", quotes)]
    )
    async with stem.Client.in_memory(app=app) as client, client.worker():
        t0 = trio.current_time()
        run_id = await client.workflows.start("quotes")
        run = await client.workflows.wait(run_id, timeout=600)
        elapsed = trio.current_time() - t0
    assert run.result == ["a", "b", "c"]
    assert 10 <= elapsed < 12
    assert [(s.index, s.name, s.meta["task_id"]) for s in run.history] == [
        (i, "quote", f"{run_id}:{i}") for i in range(3)
    ]
    assert [line for line in log if line.startswith("end")] == [
        "end c",
        "end b",
        "end a",
    ]


async def test_inline_steps_child_runs_sleeps_and_events_gather_too(
    autojump_clock: Any,
) -> None:
    """Inline steps run at once in the drive, child runs at once on engines,
    and a sleep and an event wait join the same gather."""

    async def child(wf: WorkflowContext) -> int:
        await wf.sleep(wf.params["secs"])
        return int(wf.params["secs"])

    async def parent(wf: WorkflowContext) -> list[Any]:
        async def nap(secs: float) -> float:
            await trio.sleep(secs)
            return secs

        return await wf.gather(
            wf.step("nap-a", lambda: nap(30)),
            wf.step("nap-b", lambda: nap(30)),
            wf.child("child", {"secs": 40}),
            wf.child("child", {"secs": 50}),
            wf.sleep(20),
            wf.wait_for_event("ready", timeout=3600),
        )

    app = stem.App(
        workflows=[
            stem.WorkflowScript("child", child),
            stem.WorkflowScript("parent", parent),
        ]
    )
    async with stem.Client.in_memory(app=app) as client, client.worker():
        t0 = trio.current_time()
        run_id = await client.workflows.start("parent")
        await client.workflows.send(run_id, "ready", "go")
        run = await client.workflows.wait(run_id, timeout=600)
        elapsed = trio.current_time() - t0
        children = await client.workflows.list(parent_id=run_id)
    assert run.result == [30, 30, 40, 50, None, "go"]
    assert 50 <= elapsed < 80  # not 30 + 30 + 40 + 50 + 20
    assert [s.kind for s in run.history] == [
        "step",
        "step",
        "child",
        "child",
        "sleep",
        "event",
    ]
    assert [c.run_id for c in children] == [f"{run_id}:2", f"{run_id}:3"]


async def test_a_failure_cancels_the_pending_siblings(autojump_clock: Any) -> None:
    """When one step fails, the pending ones are cancelled (a running
    activity revoked, a child run cancelled, a sleep dropped, each recorded
    as stem.StepCancelled) and the failure is raised, also on replay."""
    log: list[str] = []

    async def never(wf: WorkflowContext) -> None:
        await wf.wait_for_event("never")

    async def trip(wf: WorkflowContext) -> dict[str, Any]:
        try:
            await wf.gather(
                wf.activity("quote", args={"who": "slow", "secs": 600}),
                wf.activity("boom", args={"secs": 1}),
                wf.child("never"),
                wf.sleep(3600),
            )
        except stem.ActivityFailed as exc:
            await wf.sleep(5)  # replays the gather after the failure
            return {"step": exc.step, "error": exc.error.message}
        return {}

    app = stem.App(
        tasks=quote_tasks(log),
        workflows=[
            stem.WorkflowScript("trip", trip),
            stem.WorkflowScript("never", never),
        ],
    )
    async with stem.Client.in_memory(app=app) as client, client.worker():
        run_id = await client.workflows.start("trip")
        run = await client.workflows.wait(run_id, timeout=600)
        slow = await client.get(f"{run_id}:0")
        child = await client.workflows.get(f"{run_id}:2")
    assert run.result == {"step": "1:activity:boom", "error": "no room"}
    assert [(s.status, s.error.type if s.error else None) for s in run.history] == [
        ("failed", "stem.StepCancelled"),
        ("failed", "ValueError"),
        ("failed", "stem.StepCancelled"),
        ("failed", "stem.StepCancelled"),
        ("done", None),
    ]
    assert slow is not None and slow.state is TaskState.REVOKED
    assert child is not None and child.status == "cancelled"
    assert "end slow" not in log


async def test_return_exceptions_lets_every_step_finish(autojump_clock: Any) -> None:
    """With return_exceptions=True nothing is cancelled: a failed step's
    exception takes its place and the others run to their end."""
    log: list[str] = []

    async def both(wf: WorkflowContext) -> list[Any]:
        outcomes = await wf.gather(
            wf.activity("quote", args={"who": "slow", "secs": 60}),
            wf.activity("boom"),
            return_exceptions=True,
        )
        return [o if isinstance(o, str) else type(o).__name__ for o in outcomes]

    app = stem.App(
        tasks=quote_tasks(log), workflows=[stem.WorkflowScript("both", both)]
    )
    async with stem.Client.in_memory(app=app) as client, client.worker():
        run_id = await client.workflows.start("both")
        run = await client.workflows.wait(run_id, timeout=600)
    assert run.result == ["slow", "ActivityFailed"]
    assert "end slow" in log


async def test_finished_steps_are_not_run_again_after_a_restart(
    autojump_clock: Any,
) -> None:
    """A worker stopped in the middle of a gather leaves the finished
    activity recorded; the next worker runs only what was unfinished."""
    log: list[str] = []

    async def pair(wf: WorkflowContext) -> list[Any]:
        return await wf.gather(
            wf.activity("quote", args={"who": "fast", "secs": 1}),
            wf.activity("quote", args={"who": "slow", "secs": 100}),
        )

    app = stem.App(
        tasks=quote_tasks(log), workflows=[stem.WorkflowScript("pair", pair)]
    )
    async with stem.Client.in_memory(app=app) as client:
        async with client.worker(grace_period=0):
            run_id = await client.workflows.start("pair")
            await trio.sleep(10)
            assert sorted(log) == ["end fast", "start fast", "start slow"]
        async with client.worker():
            run = await client.workflows.wait(run_id, timeout=600)
    assert run.result == ["fast", "slow"]
    assert log.count("start fast") == 1
    assert log.count("start slow") == 2  # handed back at the stop, run again


async def test_gather_takes_only_unstarted_steps_of_the_run() -> None:
    """Anything but a wf step of this run not yet awaited is refused with a
    clear error before any step starts."""
    run = stem.WorkflowRun(run_id="r", workflow="noop")
    host: Any = None  # never reached: every call below fails first
    wf = WorkflowContext(run=run, host=host, history=())
    other = WorkflowContext(run=run, host=host, history=())

    async def coro() -> None:
        return None

    pending = coro()
    with pytest.raises(TypeError, match="wf.gather takes steps"):
        await wf.gather(pending)  # type: ignore[arg-type]
    pending.close()
    with pytest.raises(TypeError, match="wf.gather takes steps"):
        await wf.gather(other.sleep(1))
    call = wf.step("x", lambda: 1)
    with pytest.raises(RuntimeError, match="twice"):
        await wf.gather(call, call)
    assert wf.steps_seen == 0
    assert await wf.gather() == []
