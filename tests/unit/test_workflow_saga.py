"""wf.saga(): undos of completed steps run in reverse on failure, durably;
in memory under Trio's MockClock."""

from __future__ import annotations

from typing import Any

import pytest
import trio

import stem
from stem import WorkflowContext


def travel_tasks(log: list[str], *, broken_undo: str | None = None) -> list[Any]:
    """book (fails for ``fail``), cancel (fails for ``broken_undo``)."""

    @stem.task("book")
    async def book(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
        await trio.sleep(args.get("secs", 1))
        if args.get("fail"):
            log.append(f"refused {args['what']}")
            raise RuntimeError(f"no {args['what']} available")
        log.append(f"booked {args['what']}")
        return f"{args['what']}-ref"

    @stem.task("cancel")
    async def cancel(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
        await trio.sleep(args.get("secs", 1))
        if args["ref"] == broken_undo:
            log.append(f"could not cancel {args['ref']}")
            raise RuntimeError(f"{args['ref']} cannot be cancelled")
        log.append(f"cancelled {args['ref']}")
        return f"cancelled {args['ref']}"

    return [book, cancel]


def trip_script(*, parallel: bool = False, fail: str = "flight") -> Any:
    async def trip(wf: WorkflowContext) -> list[str]:
        refs = []
        async with wf.saga(parallel=parallel) as saga:
            for what in ("car", "hotel", "flight"):
                ref = await wf.activity(
                    "book", args={"what": what, "fail": what == fail}
                )
                saga.add(wf.activity("cancel", args={"ref": ref}))
                refs.append(ref)
        return refs

    return trip


async def test_undos_run_newest_first_and_the_failure_fails_the_run(
    autojump_clock: Any,
) -> None:
    """The flight cannot be booked: the hotel, then the car, are cancelled
    (each an activity in the history) and the run fails with the booking's
    error."""
    log: list[str] = []
    app = stem.App(
        tasks=travel_tasks(log), workflows=[stem.WorkflowScript("trip", trip_script())]
    )
    async with stem.Client.in_memory(app=app) as client, client.worker():
        run_id = await client.workflows.start("trip")
        with pytest.raises(stem.WorkflowFailed) as info:
            await client.workflows.wait(run_id, timeout=600)
        run = await client.workflows.get(run_id)
    assert log == [
        "booked car",
        "booked hotel",
        "refused flight",
        "cancelled hotel-ref",
        "cancelled car-ref",
    ]
    assert info.value.error is not None
    assert info.value.error.type == "stem.ActivityFailed"
    assert "no flight available" in info.value.error.message
    assert run is not None
    assert [(s.name, s.status) for s in run.history] == [
        ("book", "done"),
        ("book", "done"),
        ("book", "failed"),
        ("cancel", "done"),
        ("cancel", "done"),
    ]


async def test_a_run_that_succeeds_undoes_nothing(autojump_clock: Any) -> None:
    """Without a failure no undo runs, though every step suspended the run."""
    log: list[str] = []
    app = stem.App(
        tasks=travel_tasks(log),
        workflows=[stem.WorkflowScript("trip", trip_script(fail="nothing"))],
    )
    async with stem.Client.in_memory(app=app) as client, client.worker():
        run_id = await client.workflows.start("trip")
        run = await client.workflows.wait(run_id, timeout=600)
    assert run.result == ["car-ref", "hotel-ref", "flight-ref"]
    assert not any(line.startswith("cancelled") for line in log)


async def test_a_failing_undo_does_not_stop_the_others(autojump_clock: Any) -> None:
    """Every undo is tried; the run fails with CompensationFailed naming the
    undo that failed, chained from the original failure."""
    log: list[str] = []
    app = stem.App(
        tasks=travel_tasks(log, broken_undo="hotel-ref"),
        workflows=[stem.WorkflowScript("trip", trip_script())],
    )
    async with stem.Client.in_memory(app=app) as client, client.worker():
        run_id = await client.workflows.start("trip")
        with pytest.raises(stem.WorkflowFailed) as info:
            await client.workflows.wait(run_id, timeout=600)
    assert log[-2:] == ["could not cancel hotel-ref", "cancelled car-ref"]
    error = info.value.error
    assert error is not None
    assert error.type == "stem.CompensationFailed"
    assert "3:activity:cancel" in error.message
    assert "hotel-ref cannot be cancelled" in error.message
    assert "no flight available" in (error.traceback or "")


async def test_parallel_undos_run_at_once(autojump_clock: Any) -> None:
    """With parallel=True the undos are one gather: two 100 s cancellations
    take 100 s, not 200."""
    log: list[str] = []

    async def trip(wf: WorkflowContext) -> None:
        async with wf.saga(parallel=True) as saga:
            for what in ("car", "hotel"):
                ref = await wf.activity("book", args={"what": what})
                saga.add(wf.activity("cancel", args={"ref": ref, "secs": 100}))
            await wf.activity("book", args={"what": "flight", "fail": True})

    app = stem.App(tasks=travel_tasks(log), workflows=[stem.WorkflowScript("t", trip)])
    async with stem.Client.in_memory(app=app) as client, client.worker():
        run_id = await client.workflows.start("t")
        t0 = trio.current_time()
        with pytest.raises(stem.WorkflowFailed):
            await client.workflows.wait(run_id, timeout=600)
        elapsed = trio.current_time() - t0
    assert sorted(log[-2:]) == ["cancelled car-ref", "cancelled hotel-ref"]
    assert elapsed < 150


async def test_compensation_resumes_after_a_restart_without_repeating_undos(
    autojump_clock: Any,
) -> None:
    """A worker stopped while the second undo runs: the next worker replays
    the failure, skips the finished undo and completes the compensation."""
    log: list[str] = []

    async def trip(wf: WorkflowContext) -> None:
        async with wf.saga() as saga:
            for what in ("car", "hotel"):
                ref = await wf.activity("book", args={"what": what})
                saga.add(wf.activity("cancel", args={"ref": ref, "secs": 50}))
            await wf.activity("book", args={"what": "flight", "fail": True})

    app = stem.App(tasks=travel_tasks(log), workflows=[stem.WorkflowScript("t", trip)])
    async with stem.Client.in_memory(app=app) as client:
        async with client.worker(grace_period=0):
            run_id = await client.workflows.start("t")
            with trio.fail_after(600):
                while "cancelled hotel-ref" not in log:
                    await trio.sleep(1)
            await trio.sleep(10)  # the car's undo is running now
        async with client.worker():
            with pytest.raises(stem.WorkflowFailed):
                await client.workflows.wait(run_id, timeout=600)
    assert log.count("cancelled hotel-ref") == 1
    assert log.count("cancelled car-ref") == 1


async def test_saga_add_takes_an_unstarted_step() -> None:
    """saga.add refuses an awaited step or anything that is not a wf step."""
    run = stem.WorkflowRun(run_id="r", workflow="t")
    host: Any = None  # never reached
    wf = WorkflowContext(run=run, host=host, history=())
    saga = wf.saga()
    with pytest.raises(TypeError, match="saga.add takes steps"):
        saga.add("cancel")  # type: ignore[arg-type]
    saga.add(wf.sleep(1))
    assert saga.pending == 1
