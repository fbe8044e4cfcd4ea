"""The remaining task options, one behaviour each, under MockClock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import trio

import stem
from stem import TaskState


async def test_eta_runs_at_the_given_time(autojump_clock: Any) -> None:
    """enqueue(eta=) starts the task no earlier than that wall-clock time."""
    from datetime import UTC, datetime

    started: list[float] = []

    @stem.task("at")
    async def at(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        started.append(stem.now())

    async with stem.Client.in_memory(tasks=[at]) as client, client.worker():
        when = datetime.fromtimestamp(stem.now() + 90, UTC)
        task_id = await client.enqueue("at", eta=when)
        await client.wait_for(task_id, timeout=120)
    assert started[0] >= when.timestamp()


async def test_queue_routing(autojump_clock: Any) -> None:
    """A worker consumes only its queues; enqueue(queue=) overrides the option."""
    ran: list[str] = []

    @stem.task("routed", queue="a")
    async def routed(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        ran.append(ctx.queue)

    async with stem.Client.in_memory(tasks=[routed]) as client:
        async with client.worker(queues=["a"]):
            on_a = await client.enqueue("routed")
            on_b = await client.enqueue("routed", queue="b")
            await client.wait_for(on_a, timeout=10)
            await trio.sleep(5)
            assert (await client.get(on_b)).state is TaskState.QUEUED  # type: ignore[union-attr]
        async with client.worker(queues=["b"]):
            await client.wait_for(on_b, timeout=10)
    assert ran == ["a", "b"]


async def test_non_retryable_error_is_dead_lettered_at_once(
    autojump_clock: Any,
) -> None:
    """An error in dont_retry_on is not retried: reason non-retryable-error."""
    runs: list[int] = []

    @stem.task(
        "picky",
        max_retries=5,
        retry_policy=stem.RetryPolicy(dont_retry_on=(KeyError,)),
    )
    async def picky(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        runs.append(ctx.attempt)
        raise KeyError("missing")

    async with stem.Client.in_memory(tasks=[picky]) as client, client.worker():
        task_id = await client.enqueue("picky")
        result = await client.wait_for(task_id, timeout=60)
        await client.flush()
        [entry] = await client.dead_letters().list()
    assert runs == [1]
    assert result.state is TaskState.FAILED
    assert entry.reason == "non-retryable-error"


async def test_retry_exception_uses_its_countdown(autojump_clock: Any) -> None:
    """raise stem.Retry(countdown=7) retries after exactly 7 s."""
    starts: list[float] = []

    @stem.task("again", max_retries=1)
    async def again(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
        starts.append(trio.current_time())
        if ctx.attempt == 1:
            raise stem.Retry(countdown=7)
        return ctx.attempt

    async with stem.Client.in_memory(tasks=[again]) as client, client.worker():
        result = await client.wait_for(await client.enqueue("again"), timeout=60)
    assert result.value == 2
    assert starts[1] - starts[0] == pytest.approx(7.0, abs=0.05)


async def test_result_ttl_forgets_the_result(autojump_clock: Any) -> None:
    """result_ttl=60: the result is readable, then gone after 60 s."""

    @stem.task("brief", result_ttl=timedelta(seconds=60))
    async def brief(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
        return 1

    async with stem.Client.in_memory(tasks=[brief]) as client, client.worker():
        task_id = await client.enqueue("brief")
        assert (await client.wait_for(task_id, timeout=10)).value == 1
        await trio.sleep(61)
        assert await client.get(task_id) is None


async def test_task_options_expires_applies_to_every_enqueue(
    autojump_clock: Any,
) -> None:
    """The expires option counts from the due time; a late task ends REVOKED."""
    ran: list[int] = []

    @stem.task("fresh.only", expires=10)
    async def fresh(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        ran.append(1)

    async with stem.Client.in_memory(tasks=[fresh]) as client:
        late = await client.enqueue("fresh.only")
        delayed = await client.enqueue("fresh.only", countdown=30)
        await trio.sleep(20)
        async with client.worker():
            assert (await client.wait_for(late, timeout=10)).meta["reason"] == "expired"
            result = await client.wait_for(delayed, timeout=60)
    assert result.state is TaskState.SUCCEEDED
    assert ran == [1]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"soft_time_limit": 5, "hard_time_limit": 1}, "must not exceed"),
        ({"hard_time_limit": -1}, "hard_time_limit"),
        ({"max_retries": -1}, "max_retries"),
        ({"priority": 10}, "priority"),
        ({"queue": "bad queue"}, "queue"),
        ({"execution": "fork"}, "execution"),
    ],
)
def test_bad_options_fail_at_construction(options: dict[str, Any], match: str) -> None:
    """Invalid options raise when the task is declared, naming the option."""
    with pytest.raises((ValueError, TypeError), match=match):
        stem.TaskOptions(**options)
