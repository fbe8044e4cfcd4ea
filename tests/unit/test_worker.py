"""Worker semantics on the in-memory backend, under Trio's MockClock."""

from __future__ import annotations

from typing import Any

import pytest
import trio

import stem
from stem import TaskState


def make_flaky(fail_times: int) -> tuple[Any, list[int]]:
    attempts: list[int] = []

    @stem.task("flaky", max_retries=3)
    async def flaky(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
        attempts.append(ctx.attempt)
        if len(attempts) <= fail_times:
            raise RuntimeError(f"boom {len(attempts)}")
        return "ok"

    return flaky, attempts


async def test_task_failing_twice_succeeds_on_third_attempt(
    autojump_clock: Any,
) -> None:
    """A task failing twice then succeeding with max_retries=3 ends SUCCEEDED on attempt 3."""
    flaky, attempts = make_flaky(2)
    async with stem.Client.in_memory(tasks=[flaky]) as client, client.worker():
        task_id = await client.enqueue("flaky")
        result = await client.wait_for(task_id, timeout=3600)
    assert result.state is TaskState.SUCCEEDED
    assert result.value == "ok"
    assert result.attempt == 3
    assert attempts == [1, 2, 3]
    assert result.error is None


async def test_retries_wait_per_policy_without_real_sleeping(
    autojump_clock: Any,
) -> None:
    """Retry delays follow the policy bound (base 1 s doubling), measured on the mock clock."""
    starts: list[float] = []

    @stem.task(
        "timed", max_retries=2, retry_policy=stem.RetryPolicy(base=1.0, jitter=False)
    )
    async def timed(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        starts.append(trio.current_time())
        if ctx.attempt < 3:
            raise ValueError("again")

    async with stem.Client.in_memory(tasks=[timed]) as client, client.worker():
        task_id = await client.enqueue("timed")
        result = await client.wait_for(task_id, timeout=60)
    assert result.state is TaskState.SUCCEEDED
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert gaps[0] == pytest.approx(1.0, abs=0.05)
    assert gaps[1] == pytest.approx(2.0, abs=0.05)


async def test_always_failing_task_is_dead_lettered_with_error(
    autojump_clock: Any,
) -> None:
    """A task that always fails with max_retries=1 ends FAILED and is in the DLQ."""

    @stem.task("broken", max_retries=1, queue="work")
    async def broken(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        raise KeyError("missing thing")

    async with (
        stem.Client.in_memory(tasks=[broken]) as client,
        client.worker(queues=["work"]),
    ):
        task_id = await client.enqueue("broken", args={"n": 1})
        result = await client.wait_for(task_id, timeout=600)
        await client.flush()
        dead = await client.dead_letters("work").list()
    assert result.state is TaskState.FAILED
    assert result.attempt == 2
    assert result.error is not None and result.error.type == "KeyError"
    assert [d.task_id for d in dead] == [task_id]
    entry = dead[0]
    assert entry.reason == "max-retries-exhausted"
    assert entry.attempts == 2
    assert entry.error is not None and "missing thing" in entry.error.message
    assert "Traceback" in entry.error.traceback
    assert [h["attempt"] for h in entry.history] == [1, 2]
    assert entry.envelope is not None and entry.envelope.args == {"n": 1}


async def test_unencodable_args_raise_and_nothing_is_queued() -> None:
    """Enqueueing an argument that cannot be encoded raises and writes nothing."""

    @stem.task("t")
    async def t(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        pass

    async with stem.Client.in_memory(tasks=[t]) as client:
        with pytest.raises(stem.EncodeError, match=r"args\['x'\]"):
            await client.enqueue("t", args={"x": object()})
        stats = await client.queue_stats("default")
    assert (stats.pending, stats.delayed, stats.in_flight) == (0, 0, 0)


async def test_unregistered_and_undecodable_messages_are_dead_lettered(
    autojump_clock: Any,
) -> None:
    """Unknown task names and garbage bodies go to the DLQ; the worker keeps running."""

    @stem.task("good")
    async def good(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
        return 7

    async with stem.Client.in_memory(tasks=[good]) as client, client.worker():
        await client.backend.broker.publish_raw("default", b"\x00not json")
        unknown = await client.enqueue("nobody.home")
        ok = await client.enqueue("good")
        result = await client.wait_for(ok, timeout=10)
        failed = await client.wait_for(unknown, timeout=10)
        await client.flush()
        dead = await client.dead_letters().list()
    assert result.value == 7
    assert failed.state is TaskState.FAILED
    reasons = sorted(d.reason for d in dead)
    assert reasons == ["decode-error", "unregistered-task"]
    garbage = next(d for d in dead if d.reason == "decode-error")
    assert garbage.envelope is None and garbage.raw == b"\x00not json"


async def test_hard_time_limit_stops_a_sleeping_task(autojump_clock: Any) -> None:
    """A task with hard_time_limit=0.5 that sleeps 5 s fails on time with time-limit."""

    @stem.task("sleepy", hard_time_limit=0.5)
    async def sleepy(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        await trio.sleep(5)

    async with stem.Client.in_memory(tasks=[sleepy]) as client, client.worker():
        t0 = trio.current_time()
        task_id = await client.enqueue("sleepy")
        result = await client.wait_for(task_id, timeout=10)
        elapsed = trio.current_time() - t0
        await client.flush()
        dead = await client.dead_letters().list()
    assert result.state is TaskState.FAILED
    assert result.error is not None and result.error.type == "stem.TimeLimitExceeded"
    assert elapsed == pytest.approx(0.5, abs=0.05)
    assert dead[0].reason == "time-limit"


async def test_soft_time_limit_fails_attempt_and_is_retried(
    autojump_clock: Any,
) -> None:
    """The soft limit cancels the attempt (cleanup runs) and counts as a retryable failure."""
    cleaned: list[int] = []

    @stem.task("soft", soft_time_limit=1.0, max_retries=1)
    async def soft(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
        if ctx.attempt == 2:
            return "second time lucky"
        try:
            await trio.sleep(10)
        finally:
            cleaned.append(ctx.attempt)
        return "never"

    async with stem.Client.in_memory(tasks=[soft]) as client, client.worker():
        task_id = await client.enqueue("soft")
        result = await client.wait_for(task_id, timeout=600)
    assert result.state is TaskState.SUCCEEDED
    assert result.attempt == 2
    assert cleaned == [1]


async def test_sync_task_runs_in_a_thread() -> None:
    """A plain def task runs in a worker thread and returns its value."""
    import threading

    main = threading.get_ident()

    @stem.task("sync.add")
    def add(ctx: stem.TaskContext, args: dict[str, Any]) -> dict[str, Any]:
        return {"sum": args["a"] + args["b"], "thread": threading.get_ident() != main}

    async with stem.Client.in_memory(tasks=[add]) as client, client.worker():
        task_id = await client.enqueue("sync.add", args={"a": 2, "b": 3})
        with trio.fail_after(10):
            result = await client.wait_for(task_id)
    assert result.value == {"sum": 5, "thread": True}


async def test_revoked_queued_task_never_runs(autojump_clock: Any) -> None:
    """A queued task revoked before it starts never runs and ends REVOKED."""
    ran: list[str] = []

    @stem.task("victim")
    async def victim(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        ran.append(ctx.task_id)

    async with stem.Client.in_memory(tasks=[victim]) as client:
        task_id = await client.enqueue("victim")
        await client.revoke(task_id)
        async with client.worker():
            result = await client.wait_for(task_id, timeout=10)
            other = await client.enqueue("victim")
            await client.wait_for(other, timeout=10)
    assert result.state is TaskState.REVOKED
    assert ran == [other]


async def test_terminate_cancels_a_running_task(autojump_clock: Any) -> None:
    """revoke(terminate=True) cancels a running attempt; it ends REVOKED."""
    started = trio.Event()

    @stem.task("long")
    async def long(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        started.set()
        await trio.sleep(3600)

    async with stem.Client.in_memory(tasks=[long]) as client, client.worker():
        task_id = await client.enqueue("long")
        await started.wait()
        await client.revoke(task_id, terminate=True)
        result = await client.wait_for(task_id, timeout=30)
    assert result.state is TaskState.REVOKED


async def test_expired_task_is_revoked_not_run(autojump_clock: Any) -> None:
    """A task whose expiry passed before a worker took it never runs: REVOKED/expired."""
    ran: list[int] = []

    @stem.task("late")
    async def late(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        ran.append(1)

    async with stem.Client.in_memory(tasks=[late]) as client:
        task_id = await client.enqueue("late", expires=5)
        await trio.sleep(6)
        async with client.worker():
            result = await client.wait_for(task_id, timeout=10)
    assert result.state is TaskState.REVOKED
    assert result.meta["reason"] == "expired"
    assert ran == []


async def test_countdown_delays_execution(autojump_clock: Any) -> None:
    """A task enqueued with countdown=30 starts no earlier than 30 s later."""
    started_at: list[float] = []

    @stem.task("later")
    async def later(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        started_at.append(trio.current_time())

    async with stem.Client.in_memory(tasks=[later]) as client, client.worker():
        t0 = trio.current_time()
        task_id = await client.enqueue("later", countdown=30)
        await client.wait_for(task_id, timeout=60)
    assert started_at[0] - t0 >= 30


async def test_unique_key_deduplicates(autojump_clock: Any) -> None:
    """Two enqueues with the same unique_key return one id and run once."""
    runs: list[str] = []

    @stem.task("once")
    async def once(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        runs.append(ctx.task_id)

    async with stem.Client.in_memory(tasks=[once]) as client:
        a = await client.enqueue("once", unique_key="invoice-42")
        b = await client.enqueue("once", unique_key="invoice-42")
        async with client.worker():
            await client.wait_for(a, timeout=10)
    assert a == b
    assert runs == [a]


async def test_priority_orders_within_a_queue(autojump_clock: Any) -> None:
    """With one slot, higher-priority tasks run first."""
    order: list[int] = []

    @stem.task("p")
    async def p(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        order.append(args["p"])

    async with stem.Client.in_memory(tasks=[p]) as client:
        ids = [
            await client.enqueue("p", args={"p": n}, priority=n) for n in (0, 5, 9, 1)
        ]
        async with client.worker(concurrency=1, prefetch=0):
            for task_id in ids:
                await client.wait_for(task_id, timeout=10)
    assert order == [9, 5, 1, 0]


async def test_graceful_shutdown_finishes_running_and_hands_back_the_rest(
    autojump_clock: Any,
) -> None:
    """On worker exit running tasks finish within the grace period; queued ones stay queued."""
    finished: list[int] = []

    @stem.task("work")
    async def work(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        await trio.sleep(2)
        finished.append(args["n"])

    async with stem.Client.in_memory(tasks=[work]) as client:
        ids = [await client.enqueue("work", args={"n": n}) for n in range(5)]
        async with client.worker(concurrency=2, grace_period=10):
            await trio.sleep(0.5)  # two tasks are running now
        states = [(await client.get(i)).state for i in ids]  # type: ignore[union-attr]
        stats = await client.queue_stats()
    assert sorted(finished) == [0, 1]
    assert states.count(TaskState.SUCCEEDED) == 2
    assert states.count(TaskState.QUEUED) == 3
    assert (stats.pending, stats.in_flight) == (3, 0)


async def test_shutdown_past_grace_hands_running_task_back(autojump_clock: Any) -> None:
    """A task still running when the grace period ends goes back to the queue, not lost."""

    @stem.task("endless")
    async def endless(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        await trio.sleep(3600)

    async with stem.Client.in_memory(tasks=[endless]) as client:
        task_id = await client.enqueue("endless")
        async with client.worker(grace_period=1):
            await trio.sleep(0.5)
        result = await client.get(task_id)
        stats = await client.queue_stats()
    assert result is not None and result.state is TaskState.QUEUED
    assert stats.pending == 1


async def test_signals_reach_handlers_and_bad_handlers_do_not_break_worker(
    autojump_clock: Any,
) -> None:
    """Signal handlers (sync and async) get typed events; a raising one is contained."""
    app = stem.App()
    seen: list[str] = []

    @app.task("sig")
    async def sig(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
        return 1

    @app.signals.task_succeeded.connect
    def on_ok(event: stem.TaskEvent) -> None:
        seen.append(event.task_id)

    def boom(event: stem.TaskEvent) -> None:
        raise RuntimeError("handler bug")

    app.signals.task_received.connect(boom)

    async def slow(event: stem.TaskEvent) -> None:
        await trio.sleep(3600)

    app.signals.task_prerun.connect(slow, buffer=1)

    async with stem.Client.from_url("memory://", app=app) as client, client.worker():
        ids = [await client.enqueue("sig") for _ in range(5)]
        for task_id in ids:
            assert (await client.wait_for(task_id, timeout=10)).value == 1
        await trio.sleep(0.1)
        stats = client.bus.statistics()
    assert sorted(seen) == sorted(ids)
    assert stats.handler_errors == 5
    assert stats.dropped >= 3  # the slow handler's buffer of 1 overflowed


async def test_task_context_fields(autojump_clock: Any) -> None:
    """ctx exposes id, name, attempt from 1, queue and headers."""
    seen: dict[str, Any] = {}

    @stem.task("ctx", queue="q1")
    async def ctx_task(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        seen.update(
            id=ctx.task_id,
            name=ctx.name,
            attempt=ctx.attempt,
            queue=ctx.queue,
            headers=ctx.headers,
            prev=ctx.previous_result,
        )

    async with (
        stem.Client.in_memory(tasks=[ctx_task]) as client,
        client.worker(queues="q1"),
    ):
        task_id = await client.enqueue("ctx", headers={"tenant": "acme"})
        await client.wait_for(task_id, timeout=5)
    assert seen == {
        "id": task_id,
        "name": "ctx",
        "attempt": 1,
        "queue": "q1",
        "headers": {"tenant": "acme"},
        "prev": None,
    }


async def test_wait_for_times_out(autojump_clock: Any) -> None:
    """wait_for raises WaitTimeout (a TimeoutError) when the task does not finish."""

    @stem.task("never.run")
    async def never(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        pass

    async with stem.Client.in_memory(tasks=[never]) as client:
        task_id = await client.enqueue("never.run")
        with pytest.raises(TimeoutError):
            await client.wait_for(task_id, timeout=5)


async def test_unique_key_is_free_as_soon_as_the_result_is_visible(
    autojump_clock: Any,
) -> None:
    """Right after wait_for returns, an enqueue with the same unique args is a new task."""

    @stem.task("u.again", unique=True)
    async def again(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        pass

    async with stem.Client.in_memory(tasks=[again]) as client, client.worker():
        for _ in range(5):
            first = await client.enqueue("u.again", args={"a": 0})
            await client.wait_for(first, timeout=10)
            second = await client.enqueue("u.again", args={"a": 0})
            assert second != first
            await client.wait_for(second, timeout=10)
