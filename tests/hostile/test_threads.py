"""Tasks that ignore their time limits: hung sync tasks no longer hold a slot's
capacity and are reported as abandoned threads; an async task that blocks
past its hard limit is recorded as failed, with a warning naming it."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import trio

import stem
from stem._cli.health import check
from stem._states import TaskState


async def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not await predicate():
            await trio.sleep(0.02)


async def test_hung_sync_tasks_free_their_slots_and_are_reported(
    tmp_path: Path,
) -> None:
    """Two sync tasks hung past their hard limit leave a concurrency-2 worker
    free to run the next sync task at once; stats, heartbeats, `inspect` and
    the health check show two abandoned threads until they return."""
    release = threading.Event()

    @stem.task("hang", hard_time_limit=0.2)
    def hang(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        release.wait(30)

    @stem.task("quick")
    def quick(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
        return "done"

    url = f"sqlite:///{tmp_path}/t.db"
    try:
        async with stem.Client.from_url(url, tasks=[hang, quick]) as client:
            worker_cm = client.worker(
                concurrency=2, prefetch=0, claim_wait=0.05, heartbeat_interval=0.1
            )
            async with worker_cm as worker:
                hung = [await client.enqueue("hang") for _ in range(2)]
                for task_id in hung:
                    result = await client.wait_for(task_id, timeout=10)
                    assert result.error is not None
                    assert result.error.type == "stem.TimeLimitExceeded"
                started = trio.current_time()
                next_id = await client.enqueue("quick")
                done = await client.wait_for(next_id, timeout=10)
                took = trio.current_time() - started
                stats = worker.worker_statistics()

                async def beat_reports_two() -> bool:
                    [info] = await client.workers()
                    return info.meta.get("abandoned_threads") == 2

                await wait_until(beat_reports_two)
                health = await check(url, timeout=10, require_workers=True)
                [replies] = await client.control.stats()
                [active] = await client.control.active()
                release.set()

                async def all_returned() -> bool:
                    return not worker.worker_statistics().abandoned

                await wait_until(all_returned)
    finally:
        release.set()
    assert done.state is TaskState.SUCCEEDED
    assert took < 2.0  # was: waited for a thread token of a hung task
    assert sorted(a.task_id for a in stats.abandoned) == sorted(hung)
    assert {a.name for a in stats.abandoned} == {"hang"}
    assert health["healthy"] is True
    assert health["checks"]["workers"]["abandoned_threads"] == 2
    assert replies.data["abandoned_threads"] == 2
    assert sorted(t["task_id"] for t in active.data["abandoned"]) == sorted(hung)


async def test_an_async_task_blocking_past_its_hard_limit_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An async task that blocks the event loop past its hard limit and then
    returns is recorded FAILED with TimeLimitExceeded and dead-lettered with
    reason time-limit, and a warning names it."""

    @stem.task("blocks", hard_time_limit=0.2)
    async def blocks(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
        time.sleep(0.5)  # never yields: no limit can interrupt it
        return "too late"

    @stem.task("in.time", hard_time_limit=5)
    async def in_time(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
        time.sleep(0.05)
        return "fine"

    caplog.set_level(logging.WARNING, logger="stem.worker")
    async with stem.Client.in_memory(tasks=[blocks, in_time]) as client:
        async with client.worker(concurrency=1, claim_wait=0.05):
            late = await client.enqueue("blocks", task_id="late-1")
            ok = await client.enqueue("in.time")
            result = await client.wait_for(late, timeout=10)
            fine = await client.wait_for(ok, timeout=10)
        [dead] = await client.dead_letters().list()
    assert result.state is TaskState.FAILED
    assert result.error is not None
    assert result.error.type == "stem.TimeLimitExceeded"
    assert "without yielding" in result.error.message
    assert (dead.task_id, dead.reason) == ("late-1", "time-limit")
    assert fine.state is TaskState.SUCCEEDED
    [warning] = [r for r in caplog.records if "past its hard time limit" in r.msg]
    assert "'blocks'" in warning.getMessage()
    assert "'late-1'" in warning.getMessage()
