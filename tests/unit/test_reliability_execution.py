"""Leases, time limits in threads and processes, and autoscaling."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import trio

import stem
from stem import TaskState
from stem.actors._autoscale import decide
from stem.actors._worker import Worker
from tests.unit import _process_tasks

# -- leases -------------------------------------------------------------------


async def test_task_longer_than_its_lease_is_not_redelivered(
    autojump_clock: Any,
) -> None:
    """visibility_timeout=2 and a 10 s task: the lease is renewed, one delivery."""
    runs: list[float] = []

    @stem.task("long.lease", visibility_timeout=2)
    async def long_lease(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
        runs.append(trio.current_time())
        await trio.sleep(10)
        return "done"

    async with (
        stem.Client.in_memory(tasks=[long_lease]) as client,
        client.worker(),
        client.worker(),  # a second consumer that would take an expired lease
    ):
        task_id = await client.enqueue("long.lease")
        result = await client.wait_for(task_id, timeout=60)
        await trio.sleep(5)
    assert result.state is TaskState.SUCCEEDED
    assert result.attempt == 1
    assert len(runs) == 1


async def _noop_hand_back(self: Worker) -> None:
    """A killed worker hands nothing back."""


async def test_tasks_of_a_dead_worker_come_back_after_one_lease(
    autojump_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that dies without acking: its task runs again after one lease."""
    started: list[float] = []
    first = trio.Event()

    @stem.task("orphan", visibility_timeout=2)
    async def orphan(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
        started.append(trio.current_time())
        first.set()
        if len(started) == 1:
            await trio.sleep(3600)
        return len(started)

    monkeypatch.setattr(Worker, "_hand_back_all", _noop_hand_back)
    async with stem.Client.in_memory(tasks=[orphan]) as client:
        async with client.worker() as doomed:
            task_id = await client.enqueue("orphan")
            await first.wait()
            await trio.sleep(5)  # running past several renewals
            doomed.shutdown("hard")  # stops now, nothing acked
            died_at = trio.current_time()
        async with client.worker():
            result = await client.wait_for(task_id, timeout=60)
    assert result.state is TaskState.SUCCEEDED
    assert result.value == 2
    assert died_at < started[1] <= died_at + 2.0 + 0.01


def test_visibility_timeout_is_validated() -> None:
    """A visibility_timeout of zero or below is refused at construction."""
    with pytest.raises(ValueError, match="visibility_timeout"):
        stem.TaskOptions(visibility_timeout=0)
    with pytest.raises(ValueError):
        stem.TaskOptions(visibility_timeout=-1)
    assert stem.TaskOptions().visibility_timeout == 30.0


# -- time limits --------------------------------------------------------------


async def test_sync_task_past_its_hard_limit_fails_on_time(
    autojump_clock: Any,
) -> None:
    """A sync (thread) task past its hard limit fails at the limit; the thread
    itself is abandoned, not killed (documented)."""
    import threading

    release = threading.Event()

    @stem.task("sync.block", hard_time_limit=0.5)
    def block(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        release.wait(30)

    async with stem.Client.in_memory(tasks=[block]) as client, client.worker():
        task_id = await client.enqueue("sync.block")
        result = await client.wait_for(task_id, timeout=10)
    release.set()
    assert result.state is TaskState.FAILED
    assert result.error is not None and result.error.type == "stem.TimeLimitExceeded"


async def test_process_execution_returns_the_value_from_another_process() -> None:
    """execution="process" runs a sync task in a worker process."""
    async with (
        stem.Client.in_memory(tasks=[_process_tasks.report_pid]) as client,
        client.worker(),
    ):
        task_id = await client.enqueue("proc.pid", {"a": 2, "b": 3})
        with trio.fail_after(60):
            result = await client.wait_for(task_id)
    assert result.state is TaskState.SUCCEEDED, result.error
    assert result.value["sum"] == 5
    assert result.value["attempt"] == 1
    assert result.value["pid"] != os.getpid()


@pytest.mark.slow
async def test_hard_limit_kills_a_cpu_bound_process_task(tmp_path: Path) -> None:
    """A CPU-bound process task is killed by its hard limit (the process ends)."""
    pidfile = tmp_path / "pid"
    async with (
        stem.Client.in_memory(tasks=[_process_tasks.spin]) as client,
        client.worker(),
    ):
        task_id = await client.enqueue("proc.spin", {"pidfile": str(pidfile)})
        with trio.fail_after(60):
            result = await client.wait_for(task_id)
    assert result.state is TaskState.FAILED
    assert result.error is not None and result.error.type == "stem.TimeLimitExceeded"
    pid = int(pidfile.read_text())
    with trio.fail_after(10):
        while _alive(pid):
            await trio.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_async_handler_cannot_use_process_execution() -> None:
    """execution="process" on an async task is refused when the worker starts."""

    @stem.task("proc.async", execution="process")
    async def bad(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        pass

    async with stem.Client.in_memory(tasks=[bad]) as client:
        with pytest.raises(ValueError, match="sync"):
            async with client.worker():
                pass


# -- autoscaling --------------------------------------------------------------


async def test_autoscale_grows_with_backlog_and_shrinks_when_idle(
    autojump_clock: Any,
) -> None:
    """concurrency=(1, 4): slots grow to 4 under backlog and return to 1 idle."""
    running = 0
    peak = 0

    @stem.task("scaled")
    async def scaled(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await trio.sleep(5)
        running -= 1

    async with stem.Client.in_memory(tasks=[scaled]) as client:
        async with client.worker(concurrency=(1, 4)) as worker:
            assert worker.worker_statistics().slots == 1
            ids = [await client.enqueue("scaled") for _ in range(12)]
            await trio.sleep(3)
            assert worker.worker_statistics().slots == 4
            for task_id in ids:
                await client.wait_for(task_id, timeout=600)
            await trio.sleep(10)
            assert worker.worker_statistics().slots == 1
    assert peak == 4


async def test_autoscale_bounds_are_validated() -> None:
    """autoscale=(min, max) needs 1 <= min <= max."""
    async with stem.Client.in_memory() as client:
        with pytest.raises(ValueError, match="autoscale"):
            async with client.worker(autoscale=(3, 2)):
                pass


def test_scaling_policy() -> None:
    """Grow on backlog when all slots are busy; shrink after idling long enough."""
    common = {"low": 1, "high": 8, "idle_after": 5.0}
    assert (
        decide(slots=2, busy=2, backlog=3, at=0, idle_since=None, **common).delta == 3
    )
    assert (
        decide(slots=7, busy=7, backlog=9, at=0, idle_since=None, **common).delta == 1
    )
    first = decide(slots=4, busy=1, backlog=0, at=10, idle_since=None, **common)
    assert (first.delta, first.idle_since) == (0, 10)
    assert decide(slots=4, busy=1, backlog=0, at=12, idle_since=10, **common).delta == 0
    assert (
        decide(slots=4, busy=1, backlog=0, at=15, idle_since=10, **common).delta == -3
    )
    assert decide(slots=1, busy=0, backlog=0, at=15, idle_since=10, **common).delta == 0
