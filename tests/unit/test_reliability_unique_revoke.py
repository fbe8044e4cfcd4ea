"""Unique tasks and revocation, on the in-memory backend under MockClock."""

from __future__ import annotations

from typing import Any

import trio

import stem
from stem import TaskState


def counting(name: str, **options: Any) -> tuple[Any, list[str]]:
    runs: list[str] = []

    @stem.task(name, **options)
    async def run(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        runs.append(ctx.task_id)
        if args.get("fail"):
            raise RuntimeError("no")
        await trio.sleep(args.get("sleep", 0))

    return run, runs


# -- unique -------------------------------------------------------------------


async def test_same_unique_key_returns_one_id_and_runs_once(
    autojump_clock: Any,
) -> None:
    """Two enqueues with the same unique_key return one id and run once."""
    task, runs = counting("u")
    async with stem.Client.in_memory(tasks=[task]) as client:
        a = await client.enqueue("u", unique_key="k")
        b = await client.enqueue("u", unique_key="k")
        async with client.worker():
            await client.wait_for(a, timeout=10)
            await trio.sleep(1)
    assert a == b
    assert runs == [a]


async def test_key_is_released_when_the_task_succeeds(autojump_clock: Any) -> None:
    """After the task finished, the same unique_key enqueues a new task."""
    task, runs = counting("u")
    async with stem.Client.in_memory(tasks=[task]) as client, client.worker():
        a = await client.enqueue("u", unique_key="k")
        await client.wait_for(a, timeout=10)
        await client.flush()
        b = await client.enqueue("u", unique_key="k")
        await client.wait_for(b, timeout=10)
    assert a != b
    assert runs == [a, b]


async def test_key_is_held_while_retrying_and_released_after_final_failure(
    autojump_clock: Any,
) -> None:
    """A retrying task keeps its key; once dead-lettered the key is free."""
    task, _ = counting(
        "uf",
        max_retries=1,
        retry_policy=stem.RetryPolicy(base=10, jitter=False),
    )
    async with stem.Client.in_memory(tasks=[task]) as client, client.worker():
        a = await client.enqueue("uf", {"fail": True}, unique_key="k")
        await trio.sleep(1)  # first attempt failed, retry due in 10 s
        assert (await client.get(a)).state is TaskState.RETRYING  # type: ignore[union-attr]
        assert await client.enqueue("uf", {"fail": True}, unique_key="k") == a
        result = await client.wait_for(a, timeout=60)
        await client.flush()
        assert result.state is TaskState.FAILED
        assert await client.enqueue("uf", unique_key="k") != a


async def test_unique_true_hashes_name_and_args(autojump_clock: Any) -> None:
    """unique=True deduplicates equal args (in any key order) and not others."""
    task, _ = counting("uh", unique=True)
    async with stem.Client.in_memory(tasks=[task]) as client:
        a = await client.enqueue("uh", {"x": 1, "y": 2}, countdown=60)
        b = await client.enqueue("uh", {"y": 2, "x": 1}, countdown=60)
        c = await client.enqueue("uh", {"x": 2, "y": 2}, countdown=60)
    assert a == b
    assert c != a


async def test_unique_for_expires_the_key(autojump_clock: Any) -> None:
    """unique_for=10: a duplicate within 10 s is the same task, after it a new one."""
    task, _ = counting("ut", unique_for=10)
    async with stem.Client.in_memory(tasks=[task]) as client:
        a = await client.enqueue("ut", {"n": 1}, countdown=100)
        await trio.sleep(5)
        assert await client.enqueue("ut", {"n": 1}, countdown=100) == a
        await trio.sleep(6)
        assert await client.enqueue("ut", {"n": 1}, countdown=100) != a


async def test_revoking_a_unique_task_frees_its_key(autojump_clock: Any) -> None:
    """A revoked queued task releases its unique key at once."""
    task, runs = counting("ur")
    async with stem.Client.in_memory(tasks=[task]) as client:
        a = await client.enqueue("ur", unique_key="k", countdown=30)
        await client.revoke(a)
        b = await client.enqueue("ur", unique_key="k")
        async with client.worker():
            await client.wait_for(b, timeout=60)
            await trio.sleep(40)
        assert (await client.get(a)).state is TaskState.REVOKED  # type: ignore[union-attr]
    assert a != b
    assert runs == [b]


# -- revocation ---------------------------------------------------------------


async def test_revocation_persists_for_a_fresh_worker(autojump_clock: Any) -> None:
    """A task revoked while no worker runs is honoured by a worker started later."""
    task, runs = counting("r")
    async with stem.Client.in_memory(tasks=[task]) as client:
        async with client.worker():
            pass  # a first incarnation, stopped
        task_id = await client.enqueue("r")
        await client.revoke(task_id)
        async with client.worker():
            result = await client.wait_for(task_id, timeout=10)
            await trio.sleep(2)
            stats = await client.queue_stats()
    assert result.state is TaskState.REVOKED
    assert runs == []
    assert (stats.pending, stats.in_flight) == (0, 0)


async def test_revoked_delayed_task_never_runs(autojump_clock: Any) -> None:
    """A task delayed by countdown and revoked meanwhile never runs."""
    task, runs = counting("rd")
    async with stem.Client.in_memory(tasks=[task]) as client, client.worker():
        task_id = await client.enqueue("rd", countdown=10)
        await client.revoke(task_id)
        await trio.sleep(20)
        result = await client.get(task_id)
    assert result is not None and result.state is TaskState.REVOKED
    assert runs == []


async def test_revoked_retrying_task_never_runs_again(autojump_clock: Any) -> None:
    """A task waiting for its retry is revoked and never tried again."""
    task, runs = counting(
        "rr", max_retries=3, retry_policy=stem.RetryPolicy(base=10, jitter=False)
    )
    async with stem.Client.in_memory(tasks=[task]) as client, client.worker():
        task_id = await client.enqueue("rr", {"fail": True})
        await trio.sleep(1)
        await client.revoke(task_id)
        await trio.sleep(100)
        result = await client.get(task_id)
    assert result is not None and result.state is TaskState.REVOKED
    assert runs == [task_id]


async def test_revocations_expire(autojump_clock: Any) -> None:
    """A revocation is kept for its expiry and forgotten after it."""
    task, _ = counting("re")
    async with stem.Client.in_memory(tasks=[task]) as client:
        await client.revoke("some-id", expires=5)
        assert "some-id" in await client.backend.revocations.is_revoked(["some-id"])
        await trio.sleep(6)
        assert await client.backend.revocations.is_revoked(["some-id"]) == {}


async def test_terminate_reaches_a_running_task_at_once(autojump_clock: Any) -> None:
    """terminate=True cancels a running task through the broadcast, before the poll."""
    started = trio.Event()
    task, _ = counting("rt")

    @stem.task("forever")
    async def forever(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        started.set()
        await trio.sleep(3600)

    async with stem.Client.in_memory(tasks=[task, forever]) as client:
        async with client.worker():
            task_id = await client.enqueue("forever")
            await started.wait()
            await trio.sleep(0.5)  # the revocation poll runs at +1.0 s
            t0 = trio.current_time()
            await client.revoke(task_id, terminate=True, reason="operator")
            result = await client.wait_for(task_id, timeout=30)
            elapsed = trio.current_time() - t0
    assert result.state is TaskState.REVOKED
    assert result.meta["reason"] == "operator"
    assert elapsed < 0.1
