"""Dead letters through ``client.dead_letters(queue)`` on memory and sqlite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

import stem
from stem import TaskState

FAST = stem.RetryPolicy(base=0.01, cap=0.02, jitter=False)


@stem.task("dlq.boom", queue="jobs")
async def boom(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
    if args.get("fixed"):
        return
    raise RuntimeError(f"boom {args['n']}")


attempts: list[int] = []


@stem.task("dlq.flaky", queue="jobs", max_retries=3, retry_policy=FAST)
async def flaky(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
    attempts.append(ctx.attempt)
    if ctx.attempt <= 2:
        raise ValueError("not yet")
    return "ok"


@pytest.fixture(params=["memory", "sqlite"])
async def client(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/d.db"
    async with stem.Client.from_url(url, tasks=[boom, flaky]) as c:
        yield c


async def dead(client: stem.Client, count: int) -> list[str]:
    ids = [await client.enqueue("dlq.boom", {"n": n}) for n in range(count)]
    async with client.worker(queues=["jobs"], claim_wait=0.05):
        with trio.fail_after(30):
            for task_id in ids:
                assert (await client.wait_for(task_id)).state is TaskState.FAILED
    await client.flush()
    return ids


async def test_list_pages_oldest_first(client: stem.Client) -> None:
    """list(limit, offset) pages through entries, oldest first."""
    ids = await dead(client, 4)
    dlq = client.dead_letters("jobs")
    assert [e.task_id for e in await dlq.list()] == ids
    assert [e.task_id for e in await dlq.list(limit=2, offset=1)] == ids[1:3]
    assert await dlq.list(offset=10) == []
    assert await dlq.count() == 4
    assert await client.dead_letters("default").list() == []


async def test_get_returns_the_full_entry(client: stem.Client) -> None:
    """get(id) has name, queue, reason, error, attempts, dead_at and envelope."""
    [task_id] = await dead(client, 1)
    entry = await client.dead_letters("jobs").get(task_id)
    assert entry is not None
    assert (entry.task_id, entry.name, entry.queue) == (task_id, "dlq.boom", "jobs")
    assert entry.reason == "max-retries-exhausted"
    assert entry.error is not None and entry.error.message == "boom 0"
    assert entry.attempts == 1
    assert entry.dead_at > 0
    assert entry.envelope is not None and entry.envelope.args == {"n": 0}
    assert await client.dead_letters("jobs").get("missing") is None


async def test_replay_dry_run_limit_since_and_delay(client: stem.Client) -> None:
    """replay: dry_run changes nothing; limit and since choose; delay defers."""
    ids = await dead(client, 3)
    dlq = client.dead_letters("jobs")
    assert await dlq.replay(dry_run=True) == ids
    assert await dlq.count() == 3
    assert await dlq.replay(limit=1, dry_run=True) == ids[:1]
    entries = await dlq.list()
    assert await dlq.replay(since=entries[2].dead_at, dry_run=True) == ids[2:]
    assert await dlq.replay(since=entries[2].dead_at + 3600, dry_run=True) == []

    chosen = await dlq.replay(ids[0], delay=3600)
    assert chosen == ids[:1]
    stats = await client.queue_stats("jobs")
    assert (stats.delayed, stats.dead) == (1, 2)
    replayed = await client.get(ids[0])  # the final FAILED record is replaced
    assert replayed is not None and replayed.state is TaskState.QUEUED
    assert [e.task_id for e in await dlq.list()] == ids[1:]


async def test_replayed_task_runs_again_as_attempt_one(client: stem.Client) -> None:
    """A replayed dead letter runs again from attempt 1 and can succeed."""
    [task_id] = await dead(client, 1)
    assert await client.dead_letters("jobs").replay([task_id]) == [task_id]
    async with client.worker(queues=["jobs"], claim_wait=0.05):
        with trio.fail_after(30):
            result = await client.wait_for(task_id)
    # It fails again (same args), as a fresh attempt 1, back in the DLQ once.
    assert result.state is TaskState.FAILED
    assert result.attempt == 1
    await client.flush()
    assert [e.task_id for e in await client.dead_letters("jobs").list()] == [task_id]


async def test_purge_since_and_limit(client: stem.Client) -> None:
    """purge(since, limit) deletes the chosen entries, oldest first."""
    ids = await dead(client, 4)
    dlq = client.dead_letters("jobs")
    entries = await dlq.list()
    assert await dlq.purge(since=entries[3].dead_at + 3600) == 0
    assert await dlq.purge(limit=1) == 1
    assert [e.task_id for e in await dlq.list()] == ids[1:]
    assert await dlq.purge(since=entries[2].dead_at) == 2
    assert [e.task_id for e in await dlq.list()] == ids[1:2]
    assert await dlq.purge() == 1
    assert await dlq.count() == 0


async def test_retries_leave_no_dead_letter(client: stem.Client) -> None:
    """A task failing twice then succeeding leaves the dead-letter queue empty."""
    attempts.clear()
    task_id = await client.enqueue("dlq.flaky")
    async with client.worker(queues=["jobs"], claim_wait=0.05):
        with trio.fail_after(30):
            result = await client.wait_for(task_id)
    await client.flush()
    assert result.state is TaskState.SUCCEEDED
    assert attempts == [1, 2, 3]
    assert await client.dead_letters("jobs").list() == []
    assert (await client.queue_stats("jobs")).dead == 0


async def test_late_copy_of_a_finished_task_is_not_dead_lettered() -> None:
    """When a redelivered copy fails after another copy succeeded, the message
    is removed: no dead letter, no retry, the SUCCEEDED result stands."""
    from stem.actors import _outcomes
    from stem.actors._broker import BrokerActor, Publish
    from stem.adapters.memory import open_backend

    async with open_backend() as backend:
        actor = BrokerActor(backend)
        env = stem.Envelope(id="t1", name="t", max_retries=3)
        await actor.handle_batch([Publish(envelopes=(env,))])
        [first] = await backend.broker.claim(
            ["default"], limit=1, lease=1, consumer="a"
        )
        await trio.sleep(1.5)  # the lease passes; another consumer takes it
        [second] = await backend.broker.claim(
            ["default"], limit=1, lease=9, consumer="b"
        )
        await actor.handle_batch(
            [_outcomes.succeeded(first, "ok", at=stem.now(), ttl=None)]
        )
        for error in (RuntimeError("retryable"), KeyError("fatal")):
            outcome = _outcomes.failed(second, error, stem.TaskOptions(), at=stem.now())
            await actor.handle_batch([outcome.finish])
        stats = await backend.broker.stats("default")
        result = await backend.results.get("t1")
    assert result is not None and result.state is TaskState.SUCCEEDED
    assert (stats.pending, stats.delayed, stats.in_flight, stats.dead) == (0, 0, 0, 0)


async def test_a_second_copy_in_the_same_batch_never_replaces_a_terminal_result() -> (
    None
):
    """Two copies of a task finishing in one BrokerActor batch: the first
    terminal outcome is stored and the second copy's (a success, or a final
    failure) only removes its message: no overwrite, no dead letter."""
    from stem.actors import _outcomes
    from stem.actors._broker import BrokerActor, Publish
    from stem.adapters.memory import open_backend

    async with open_backend() as backend:
        actor = BrokerActor(backend)
        env = stem.Envelope(id="t1", name="t", max_retries=0)
        await actor.handle_batch([Publish(envelopes=(env, env))])
        deliveries = await backend.broker.claim(
            ["default"], limit=3, lease=9, consumer="a"
        )
        assert len(deliveries) == 2
        first, second = deliveries
        at = stem.now()
        won = _outcomes.succeeded(first, "first", at=at, ttl=None)
        late = _outcomes.succeeded(second, "second", at=at, ttl=None)
        await actor.handle_batch([won, late])
        result = await backend.results.get("t1")
        assert result is not None and result.value == "first"
        await actor.handle_batch([Publish(envelopes=(env, env))])
        a, b = await backend.broker.claim(["default"], limit=2, lease=9, consumer="a")
        await backend.results.forget("t1")
        ok = _outcomes.succeeded(a, "ok", at=at, ttl=None)
        failed = _outcomes.failed(b, KeyError("fatal"), stem.TaskOptions(), at=at)
        await actor.handle_batch([ok, failed.finish])
        stats = await backend.broker.stats("default")
        result = await backend.results.get("t1")
    assert result is not None and result.value == "ok"
    assert (stats.pending, stats.delayed, stats.in_flight, stats.dead) == (0, 0, 0, 0)
