"""The engine and its fencing tokens: a drive that lost its run stops without
writing, and a stopping engine hands its runs back; in memory under Trio's
MockClock."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio

import stem
from stem import WorkflowContext


async def test_a_drive_blocked_past_its_lease_stops_and_the_run_is_replayed(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A step that blocks the event loop past the lease (the clock jumps
    while it runs) has its write refused: the drive stops, even though the
    script catches Exception, and a new claim replays the run once."""
    calls: list[str] = []

    def blocking() -> str:
        calls.append("blocking")
        if len(calls) == 1:
            autojump_clock.jump(120.0)  # the loop was stuck for 2 minutes
        return "done"

    async def stuck(wf: WorkflowContext) -> list[str]:
        try:
            first = await wf.step("blocking", blocking)
        except Exception:  # cannot swallow the lost lease
            first = "swallowed"
        second = await wf.step("after", lambda: calls.append("after") or "ok")
        return [first, second]

    app = stem.App(workflows=[stem.WorkflowScript("stuck", stuck)])
    caplog.set_level(logging.WARNING, logger="stem.workflows")
    async with stem.Client.in_memory(app=app) as client, client.worker():
        run_id = await client.workflows.start("stuck")
        run = await client.workflows.wait(run_id, timeout=600)
    assert run.result == ["done", "ok"]
    assert calls == ["blocking", "blocking", "after"]
    assert run.history[0].value == "done"
    assert any(
        "lost workflow run" in r.getMessage() and "lease passed" in r.getMessage()
        for r in caplog.records
    )


async def test_a_stopping_engine_hands_its_run_back(autojump_clock: Any) -> None:
    """A worker leaving while a run's inline step is in progress releases the
    run: it is due at once and the next worker finishes it well before the
    60 s lease would have passed."""
    started = trio.Event()
    attempts: list[int] = []

    async def slow_once() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            started.set()
            await trio.sleep(3600)
        return "finished"

    async def long_step(wf: WorkflowContext) -> str:
        return str(await wf.step("slow", slow_once))

    app = stem.App(workflows=[stem.WorkflowScript("long", long_step)])
    async with stem.Client.in_memory(app=app) as client:
        async with client.worker():
            run_id = await client.workflows.start("long")
            await started.wait()
        parked = await client.workflows.get(run_id)
        assert parked is not None
        assert (parked.status, parked.lease_owner) == ("suspended", None)
        assert parked.due_at is not None and parked.due_at <= stem.now()
        t0 = trio.current_time()
        async with client.worker():
            run = await client.workflows.wait(run_id, timeout=600)
        assert trio.current_time() - t0 < 10
    assert run.result == "finished"
    assert len(attempts) == 2
