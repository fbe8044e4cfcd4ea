"""Hypothesis properties of the worker on the in-memory backend (MockClock)."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stem
from stem import TaskState

plans = st.lists(
    st.tuples(
        st.integers(0, 4), st.integers(0, 3)
    ),  # (failures before success, max_retries)
    min_size=1,
    max_size=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans=plans, concurrency=st.integers(1, 4))
def test_attempts_bounded_one_terminal_state_nothing_lost(
    plans: list[tuple[int, int]], concurrency: int
) -> None:
    """Each task runs at most max_retries + 1 times, ends in exactly one terminal
    state (SUCCEEDED iff it had attempts enough), and none is lost."""
    runs: dict[str, list[int]] = {}
    terminal_writes: dict[str, list[TaskState]] = {}

    @stem.task("planned")
    async def planned(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
        runs.setdefault(ctx.task_id, []).append(ctx.attempt)
        if ctx.attempt <= args["fail"]:
            raise RuntimeError(f"planned failure {ctx.attempt}")
        return ctx.attempt

    app = stem.App([planned])

    @app.signals.task_succeeded.connect
    def on_ok(event: stem.TaskEvent) -> None:
        terminal_writes.setdefault(event.task_id, []).append(TaskState.SUCCEEDED)

    @app.signals.task_failed.connect
    def on_failed(event: stem.TaskEvent) -> None:
        terminal_writes.setdefault(event.task_id, []).append(TaskState.FAILED)

    async def scenario() -> None:
        async with stem.Client.in_memory(app=app) as client:
            async with client.worker(concurrency=concurrency):
                ids = [
                    await client.enqueue(
                        "planned", args={"fail": fail}, max_retries=retries
                    )
                    for fail, retries in plans
                ]
                results = [await client.wait_for(i, timeout=10_000) for i in ids]
                await trio.sleep(1)  # let the signal handlers run
            dead = {e.task_id for e in await client.dead_letters().list(limit=1000)}
            stats = await client.queue_stats()
        assert (stats.pending, stats.delayed, stats.in_flight) == (0, 0, 0)
        for task_id, (fail, retries), result in zip(ids, plans, results, strict=True):
            attempts = runs[task_id]
            assert attempts == list(range(1, len(attempts) + 1))
            assert len(attempts) <= retries + 1
            should_succeed = fail <= retries
            assert result.state is (
                TaskState.SUCCEEDED if should_succeed else TaskState.FAILED
            )
            assert result.attempt == len(attempts)
            assert len(terminal_writes[task_id]) == 1
            assert (task_id in dead) is (not should_succeed)

    trio.run(scenario, clock=trio.testing.MockClock(autojump_threshold=0))
