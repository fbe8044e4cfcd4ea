"""Rate limits: token buckets per task (and key), local or global, deferring
rather than failing, on the in-memory backend under MockClock."""

from __future__ import annotations

from typing import Any

import pytest
import trio

import stem
from stem import TaskState
from stem.actors._ratelimit import WorkerRateLimiter, bucket_key
from stem.adapters.memory import MemoryBackend


def recorder(name: str, **options: Any) -> tuple[Any, list[tuple[float, str]]]:
    starts: list[tuple[float, str]] = []

    @stem.task(name, **options)
    async def run(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
        starts.append((trio.current_time(), ctx.headers.get("tenant", "")))
        return ctx.attempt

    return run, starts


async def test_fifteen_tasks_at_five_per_second_take_at_least_two_seconds(
    autojump_clock: Any,
) -> None:
    """rate_limit="5/s": 15 tasks take at least ~2 s in all, one start every 0.2 s."""
    task, starts = recorder("limited", rate_limit="5/s")
    async with stem.Client.in_memory(tasks=[task]) as client, client.worker():
        t0 = trio.current_time()
        ids = [await client.enqueue("limited") for _ in range(15)]
        results = [await client.wait_for(i, timeout=60) for i in ids]
        elapsed = trio.current_time() - t0
    assert all(r.state is TaskState.SUCCEEDED and r.value == 1 for r in results)
    assert elapsed >= 2.0
    times = sorted(t for t, _ in starts)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= 0.2 - 1e-6
    assert times[-1] - times[0] == pytest.approx(2.8, abs=0.05)


async def test_global_scope_holds_across_two_workers(autojump_clock: Any) -> None:
    """With scope global, two workers together start at most one task per 0.2 s."""
    task, starts = recorder("shared", rate_limit="5/s", rate_limit_scope="global")
    async with (
        stem.Client.in_memory(tasks=[task]) as client,
        client.worker(concurrency=4),
        client.worker(concurrency=4),
    ):
        ids = [await client.enqueue("shared") for _ in range(12)]
        for task_id in ids:
            await client.wait_for(task_id, timeout=60)
    times = sorted(t for t, _ in starts)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len(times) == 12
    assert min(gaps) >= 0.2 - 1e-6


async def test_local_scope_is_per_worker(autojump_clock: Any) -> None:
    """With the default local scope, each of two workers has its own bucket."""
    task, starts = recorder("each", rate_limit="1/s")
    async with (
        stem.Client.in_memory(tasks=[task]) as client,
        client.worker(concurrency=2, queues=["a"]),
        client.worker(concurrency=2, queues=["b"]),
    ):
        t0 = trio.current_time()
        ids = [await client.enqueue("each", queue=q) for q in ("a", "b", "a", "b")]
        for task_id in ids:
            await client.wait_for(task_id, timeout=60)
    # Two buckets of 1/s: four tasks need about 1 s, not 3 s.
    assert max(t for t, _ in starts) - t0 == pytest.approx(1.0, abs=0.05)


async def test_rate_limit_key_gives_each_tenant_its_own_bucket(
    autojump_clock: Any,
) -> None:
    """rate_limit_key="tenant": tenants a and b are limited independently."""
    task, starts = recorder("tenanted", rate_limit="1/s", rate_limit_key="tenant")
    async with stem.Client.in_memory(tasks=[task]) as client, client.worker():
        t0 = trio.current_time()
        ids = [
            await client.enqueue("tenanted", headers={"tenant": tenant})
            for tenant in ("a", "b", "a", "b")
        ]
        for task_id in ids:
            await client.wait_for(task_id, timeout=60)
    by_tenant = {
        tenant: sorted(t - t0 for t, who in starts if who == tenant)
        for tenant in ("a", "b")
    }
    assert by_tenant["a"] == pytest.approx([0.0, 1.0], abs=0.05)
    assert by_tenant["b"] == pytest.approx([0.0, 1.0], abs=0.05)


async def test_long_waits_are_deferred_without_using_an_attempt(
    autojump_clock: Any,
) -> None:
    """At 1/m the later tasks are handed back with a delay, then run on attempt 1."""
    task, starts = recorder("slow.limit", rate_limit="1/m", max_retries=0)
    async with stem.Client.in_memory(tasks=[task]) as client:
        async with client.worker(concurrency=3) as worker:
            t0 = trio.current_time()
            ids = [await client.enqueue("slow.limit") for _ in range(3)]
            results = [await client.wait_for(i, timeout=600) for i in ids]
            stats = worker.worker_statistics()
        await client.flush()
        dead = await client.dead_letters().list()
    assert [r.state for r in results] == [TaskState.SUCCEEDED] * 3
    assert [r.attempt for r in results] == [1, 1, 1]
    times = sorted(t - t0 for t, _ in starts)
    assert times[1] >= 60 - 1e-6
    assert times[2] >= 120 - 1e-6
    assert stats.rate_limited >= 2
    assert dead == []


async def test_unlimited_tasks_are_not_slowed_by_a_limited_one(
    autojump_clock: Any,
) -> None:
    """A rate-limited task waiting for a token does not delay other tasks."""
    limited, _ = recorder("lim", rate_limit="1/h")
    free, free_starts = recorder("free")
    async with stem.Client.in_memory(tasks=[limited, free]) as client:
        async with client.worker(concurrency=2):
            t0 = trio.current_time()
            for _ in range(3):
                await client.enqueue("lim")
            ids = [await client.enqueue("free") for _ in range(5)]
            for task_id in ids:
                await client.wait_for(task_id, timeout=10)
            assert max(t for t, _ in free_starts) - t0 < 0.1


async def test_local_bucket_reserves_short_waits_and_refuses_long_ones(
    autojump_clock: Any,
) -> None:
    """The local bucket reserves a token due within hold, never one beyond."""
    backend = MemoryBackend()
    limiter = WorkerRateLimiter(backend.limiter, hold=0.5)
    limit = stem.RateLimit.parse("5/s")
    assert limiter.reserve_local("k", limit, hold=0.5) == 0.0
    assert limiter.reserve_local("k", limit, hold=0.5) == pytest.approx(0.2)
    assert limiter.reserve_local("k", limit, hold=0.5) == pytest.approx(0.4)
    assert limiter.reserve_local("k", limit, hold=0.5) == pytest.approx(0.6)
    # The refused wait took nothing: the next caller sees the same wait.
    assert limiter.reserve_local("k", limit, hold=0.5) == pytest.approx(0.6)
    await trio.sleep(1.0)
    assert limiter.reserve_local("k", limit, hold=0.5) == 0.0


def test_bucket_key_uses_the_named_header() -> None:
    """The bucket is the task name, or name|header value with rate_limit_key."""
    env = stem.Envelope(id="1", name="t", headers={"tenant": "acme"})
    plain_opts = stem.TaskOptions(rate_limit="1/s")
    keyed = stem.TaskOptions(rate_limit="1/s", rate_limit_key="tenant")
    assert bucket_key(env, plain_opts) == "t"
    assert bucket_key(env, keyed) == "t|acme"


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"rate_limit": "5/x"}, "invalid rate_limit"),
        ({"rate_limit": "0/s"}, "more than 0"),
        ({"rate_limit_scope": "cluster"}, "rate_limit_scope"),
        ({"rate_limit_burst": 3}, "needs a rate_limit"),
    ],
)
def test_bad_rate_limit_options_fail_at_construction(
    options: dict[str, Any], match: str
) -> None:
    """Invalid rate-limit options raise when the task is declared."""
    with pytest.raises(ValueError, match=match):
        stem.TaskOptions(**options)
