"""Redis-specific behaviour beyond the contract suite: leases in the PEL, URL
options, unreachable servers, cluster slots."""

from __future__ import annotations

import time

import pytest
import redis.asyncio as aioredis
import trio
import trio_asyncio
from redis.crc import key_slot

from stem._clock import now
from stem._envelope import Envelope
from stem._errors import BrokerUnavailable, ConfigError, GroupExpired
from stem._result import TaskResult
from stem._states import TaskState
from stem.adapters.redis import open_backend
from stem.adapters.redis._conn import Keys, parse_url
from tests._servers import free_port

pytestmark = pytest.mark.redis


async def _raw(url: str, method: str, *args):
    client = aioredis.Redis.from_url(url)
    try:
        return await trio_asyncio.aio_as_trio(getattr(client, method))(*args)
    finally:
        await trio_asyncio.aio_as_trio(client.aclose)()


async def test_publish_claim_ack(redis_backend_factory) -> None:
    """A published envelope is claimed once and gone after ack."""
    async with redis_backend_factory() as backend:
        broker = backend.broker
        await broker.publish([Envelope(id="t1", name="x", queue="q")])
        got = await broker.claim(["q"], limit=10, lease=30, consumer="c1")
        assert [d.task_id for d in got] == ["t1"]
        assert got[0].delivery_count == 1
        assert await broker.claim(["q"], limit=10, lease=30, consumer="c1") == []
        await broker.ack(got)
        stats = await broker.stats("q")
        assert (stats.pending, stats.in_flight) == (0, 0)


async def test_extend_renews_the_pending_entry_never_a_copy(
    redis_backend_factory, redis_url, mock_clock
) -> None:
    """Renewing a lease past its first deadline keeps one pending entry, owned
    by the same consumer with the same delivery count; nobody else gets it."""
    async with redis_backend_factory() as backend:
        broker = backend.broker
        await broker.publish([Envelope(id="long", name="x", queue="q")])
        (delivery,) = await broker.claim(["q"], limit=1, lease=10, consumer="w1")
        for _ in range(5):
            mock_clock.jump(8)
            assert await broker.extend([delivery], lease=10) == [True]
            assert await broker.claim(["q"], limit=5, lease=10, consumer="w2") == []
        stream = backend.hub.keys.queue("q")[0]
        assert await _raw(redis_url, "xlen", stream) == 1
        pending = await _raw(redis_url, "xpending_range", stream, "stem", "-", "+", 10)
        assert len(pending) == 1
        assert pending[0]["consumer"] == b"w1"
        assert pending[0]["times_delivered"] == 1
        stats = await broker.stats("q")
        assert (stats.pending, stats.in_flight) == (0, 1)


async def test_stale_receipt_after_reclaim_changes_nothing(
    redis_backend_factory, mock_clock
) -> None:
    """After a lease expires and another consumer claims the message, the
    first receipt can neither ack, nack, extend nor dead-letter it."""
    async with redis_backend_factory() as backend:
        broker = backend.broker
        await broker.publish([Envelope(id="m", name="x", queue="q")])
        (old,) = await broker.claim(["q"], limit=1, lease=5, consumer="w1")
        mock_clock.jump(6)
        (new,) = await broker.claim(["q"], limit=1, lease=5, consumer="w1")
        assert new.delivery_count == 2
        assert new.receipt != old.receipt
        await broker.ack([old])
        assert not await broker.nack(old)
        assert await broker.extend([old, new], lease=5) == [False, True]
        stats = await broker.stats("q")
        assert stats.in_flight == 1
        await broker.ack([new])
        assert (await broker.stats("q")).in_flight == 0


def test_url_options() -> None:
    """Namespace and timeouts come from the query or keywords; the rest goes
    to redis-py untouched."""
    settings = parse_url("redis://:pw@h:6380/3?namespace=app&retry_for=1.5", {})
    assert settings.namespace == "app"
    assert settings.retry_for == 1.5
    assert settings.client_url == "redis://:pw@h:6380/3"
    assert parse_url("rediss://h/0", {"namespace": "x"}).namespace == "x"
    with pytest.raises(ConfigError):
        parse_url("redis://h/0?namespace=a{b}", {})
    with pytest.raises(ConfigError):
        parse_url("redis://h/0", {"bogus": 1})
    with pytest.raises(ConfigError):
        parse_url("http://h/0", {})


def test_queue_keys_share_one_cluster_slot() -> None:
    """Every key of a queue hashes to one Redis Cluster slot."""
    keys = Keys("stem")
    for queue in ["default", "mail", "a:b"]:
        assert len({key_slot(k.encode()) for k in keys.queue(queue)}) == 1
    assert len({key_slot(k.encode()) for k in keys.revocations}) == 1
    assert len({key_slot(k.encode()) for k in keys.heartbeats}) == 1


async def test_unreachable_server_raises_broker_unavailable_quickly() -> None:
    """Opening a backend on a closed port raises BrokerUnavailable within the
    retry budget, with the password redacted."""
    url = f"redis://:secret@127.0.0.1:{free_port()}/0"
    began = time.monotonic()
    with trio.fail_after(10), pytest.raises(BrokerUnavailable) as info:
        async with open_backend(url, retry_for=0.5):
            pass
    assert time.monotonic() - began < 3
    assert "secret" not in str(info.value)
    assert "***" in str(info.value)


async def test_capabilities_follow_the_client_clock(redis_server) -> None:
    """Leases follow Trio's clock, so the backend does not need server_clock."""
    async with open_backend(redis_server.url) as backend:
        assert backend.capabilities.name == "redis"
        assert not backend.capabilities.server_clock


async def test_group_expiry_is_stored_in_client_time(
    redis_backend_factory, redis_url, mock_clock
) -> None:
    """A group's expiry and forget times are hash fields in client time (the
    server's PEXPIRE only frees memory after the forget time); a time that
    does not parse counts as none instead of breaking the group."""
    ok = TaskResult(task_id="m", state=TaskState.SUCCEEDED)
    async with redis_backend_factory() as backend:
        results = backend.results
        key = backend.hub.keys.group("g")
        assert await results.group_add("g", 0, ok, ttl=10) == 1
        fields = await _raw(redis_url, "hgetall", key)
        assert float(fields[b"~e"]) == pytest.approx(now() + 10)
        assert float(fields[b"~f"]) == pytest.approx(now() + 20)
        assert 20_000 < await _raw(redis_url, "pttl", key) <= 21_000
        mock_clock.jump(11)  # the server's clock has not moved
        with pytest.raises(GroupExpired):
            await results.group_add("g", 1, ok, ttl=10)
        await _raw(redis_url, "hset", key, "~e", "garbage")
        await _raw(redis_url, "hset", key, "~f", "")
        assert (await _raw(redis_url, "hget", key, "~e")) == b"garbage"
        assert await results.group_add("g", 1, ok, ttl=None) == 2
        assert sorted(await results.group_results("g")) == [0, 1]


async def test_more_concurrent_calls_than_connections_wait_for_one(
    redis_backend_factory,
) -> None:
    """300 concurrent reads through a pool of 4 connections all answer: a
    busy pool makes callers wait for a connection (backpressure) instead of
    raising BrokerUnavailable("Too many connections"), as it did before the
    soak benchmark showed it under load."""
    async with redis_backend_factory(max_connections=4) as backend:
        await backend.results.set_state(
            [TaskResult(task_id="known", state=TaskState.SUCCEEDED, value=7)]
        )
        answers: list[object] = []

        async def read(i: int) -> None:
            found = await backend.results.get("known" if i % 2 else f"none{i}")
            answers.append(None if found is None else found.value)

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for i in range(300):
                    nursery.start_soon(read, i)
    assert sorted(answers, key=str) == [7] * 150 + [None] * 150
