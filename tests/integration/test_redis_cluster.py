"""The redis backend on a real Redis Cluster (3 masters, 3 replicas on
loopback, ``tests/_cluster.py``): URLs, where keys live, batches split by
slot, dead letters across slots, and pub/sub heard from every node. The
contract suite runs on the cluster too (``tests/contract``)."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import trio
from redis.crc import key_slot

from stem._envelope import Envelope
from stem._errors import ConfigError
from stem._redact import redact
from stem._result import TaskResult
from stem._states import TaskState
from stem.adapters.redis import RedisClusterBackend
from stem.adapters.redis._conn import Keys, parse_url, slot_groups
from stem.contracts import CombinedPublish, DeadLetter
from tests._cluster import _command
from tests.integration.test_redis_cross_process import _child, _line

pytestmark = pytest.mark.redis


def test_cluster_urls() -> None:
    """``redis+cluster://`` names the seed nodes (``?cluster=true`` one
    seed); a database other than 0, a bad seed or a bad flag is refused."""
    settings = parse_url(
        "redis+cluster://u:pw@h1:7000,h2:7001,[::1]:7002/0?namespace=app", {}
    )
    assert settings.cluster
    assert settings.seeds == (("h1", 7000), ("h2", 7001), ("::1", 7002))
    assert settings.namespace == "app"
    assert settings.client_url == "redis://u:pw@h1:7000/0"
    tls = parse_url("rediss+cluster://h1:7000?ssl_cert_reqs=none", {})
    assert tls.client_url == "rediss://h1:7000?ssl_cert_reqs=none"
    assert parse_url("redis://h:7000?cluster=true", {}).seeds == (("h", 7000),)
    assert not parse_url("redis://h:7000?cluster=false", {}).cluster
    assert not parse_url("redis://h:7000", {}).cluster
    for bad in [
        "redis+cluster://h1:7000,h2:7001/3",
        "redis+cluster://h1:7000,h2:notaport",
        "redis+cluster://h1:7000,,h2:7001",
        "redis://h:7000?cluster=maybe",
    ]:
        with pytest.raises(ConfigError) as caught:
            parse_url(bad, {})
        assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        parse_url("redis+cluster://:secret@h1:7000,h2:x", {})
    assert "secret" not in str(caught.value)
    assert "'h2:x'" in str(caught.value)
    assert "secret" not in redact("redis+cluster://u:secret@h1:7000,h2:7001/0")


def test_slot_groups_keep_each_chunk_in_one_slot() -> None:
    """Batched script calls are chunked by size on one Redis and by slot
    (then size) on a cluster; every index appears once."""
    keys = [Keys("ns").result(f"task-{i}") for i in range(450)]
    single = slot_groups(keys, cluster=False, size=200)
    assert [len(g) for g in single] == [200, 200, 50]
    grouped = slot_groups(keys + keys[:5], cluster=True, size=3)
    assert sorted(i for g in grouped for i in g) == list(range(455))
    for group in grouped:
        assert len(group) <= 3
        assert len({key_slot((keys + keys[:5])[i].encode()) for i in group}) == 1


async def test_queues_spread_over_the_masters(
    redis_cluster, redis_cluster_backend_factory
) -> None:
    """Each queue's keys share one slot and are stored on its master; 40
    queues land on all three masters."""
    async with redis_cluster_backend_factory() as backend:
        assert isinstance(backend, RedisClusterBackend)
        assert not isinstance(backend, CombinedPublish)
        queues = [f"q{i}" for i in range(40)]
        await backend.broker.publish(
            [Envelope(id=f"t-{q}", name="x", queue=q) for q in queues]
        )
        masters = set()
        for queue in queues:
            keys = backend.broker.keys.queue(queue)
            slots = {key_slot(k.encode()) for k in keys}
            assert len(slots) == 1
            master = redis_cluster.master_of(slots.pop())
            masters.add(master)
            assert _command(master, "EXISTS", keys[0]) == b":1\r\n"
            stats = await backend.broker.stats(queue)
            assert stats.pending == 1
        assert masters == set(redis_cluster.master_ports())
        got = await backend.broker.claim(queues, limit=100, lease=30, consumer="c")
        assert sorted(d.task_id for d in got) == sorted(f"t-{q}" for q in queues)
        await backend.broker.ack(got)
        assert sorted(await backend.broker.queues()) == sorted(queues)


async def test_result_batches_span_slots(redis_cluster_backend_factory) -> None:
    """A set_state batch over hundreds of slots stores every record and
    returns each record's own flag (a terminal one is never overwritten)."""
    async with redis_cluster_backend_factory() as backend:
        ids = [f"task-{i}" for i in range(300)]
        done = [TaskResult(task_id=i, state=TaskState.SUCCEEDED, value=1) for i in ids]
        assert await backend.results.set_state(done[::3]) == [True] * 100
        again = [TaskResult(task_id=i, state=TaskState.FAILED) for i in ids]
        flags = await backend.results.set_state(again)
        assert flags == [n % 3 != 0 for n in range(300)]
        got = await backend.results.get_many(ids)
        assert [r.state for r in got if r is not None] == [
            TaskState.SUCCEEDED if n % 3 == 0 else TaskState.FAILED for n in range(300)
        ]
        fresh = [TaskResult(task_id=f"new-{i}", state=TaskState.QUEUED) for i in ids]
        created = await backend.results.create(fresh + fresh[:2])
        assert created == [True] * 300 + [False, False]


def _two_queues_in_two_slots(keys: Keys) -> tuple[str, str]:
    first = "a"
    slot = key_slot(keys.queue(first)[0].encode())
    for n in range(100):
        other = f"b{n}"
        if key_slot(keys.queue(other)[0].encode()) != slot:
            return first, other
    raise AssertionError("no second slot found")


async def test_dead_letter_into_another_slot(redis_cluster_backend_factory) -> None:
    """A message dead-lettered into a queue in another slot is recorded
    there and removed from its own queue; a stale receipt records nothing."""
    async with redis_cluster_backend_factory() as backend:
        broker = backend.broker
        source, target = _two_queues_in_two_slots(broker.keys)
        await broker.publish([Envelope(id="t1", name="x", queue=source)])
        [delivery] = await broker.claim([source], limit=1, lease=30, consumer="c")
        entry = DeadLetter(
            task_id="t1",
            name="x",
            queue=target,
            reason="test",
            error=None,
            attempts=1,
            dead_at=1.0,
            envelope=delivery.envelope,
        )
        assert await broker.dead_letter(delivery, entry)
        assert [d.task_id for d in await broker.list_dead(target)] == ["t1"]
        assert await broker.list_dead(source) == []
        assert (await broker.stats(source)).in_flight == 0
        # the same receipt again is stale: nothing more is recorded
        assert not await broker.dead_letter(delivery, entry)
        assert len(await broker.list_dead(target)) == 1


async def test_broadcast_published_on_any_node_is_heard(
    redis_cluster, redis_cluster_backend_factory
) -> None:
    """A broadcast PUBLISHed on any of the six nodes, masters or replicas,
    reaches a subscriber listening on whichever node it picked; so does
    ``broker.broadcast`` from another backend."""
    async with (
        redis_cluster_backend_factory() as listener,
        redis_cluster_backend_factory(namespace=listener.namespace) as sender,
        listener.broker.subscribe() as inbox,
    ):
        channel = listener.broker.keys.broadcast
        for port in redis_cluster.alive():
            body = json.dumps({"from": port})
            assert _command(port, "PUBLISH", channel, body).startswith(b":")
        await sender.broker.broadcast({"from": "sender"})
        heard = []
        with trio.fail_after(10):
            for _ in range(len(redis_cluster.alive()) + 1):
                heard.append((await inbox.receive())["from"])
        assert sorted(map(str, heard)) == sorted(
            [str(p) for p in redis_cluster.alive()] + ["sender"]
        )


@pytest.mark.parametrize("mode", ["result", "publish"])
async def test_other_process_wakes_waiter_on_cluster(
    redis_cluster_backend_factory, redis_cluster_url, mode
) -> None:
    """A result or a publish written by another process on the cluster wakes
    this process's waiter at once (pub/sub across nodes, not polling)."""
    namespace = f"x{uuid.uuid4().hex[:8]}"
    task_id = f"task-{mode}"
    async with redis_cluster_backend_factory(namespace=namespace) as backend:
        proc = await _child(redis_cluster_url, namespace, mode, task_id)
        try:
            with trio.fail_after(30):
                assert await _line(proc.stdout) == "ready"
                woke_at: list[float] = []

                async def waiter() -> None:
                    if mode == "result":
                        result = await backend.results.wait(task_id, timeout=20)
                        assert result is not None
                        assert result.value == 42
                    else:
                        got = await backend.broker.claim(
                            ["q"], limit=1, lease=10, consumer="w", wait=20
                        )
                        assert [d.task_id for d in got] == [task_id]
                    woke_at.append(time.time())

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(waiter)
                    await trio.sleep(0.3)  # the waiter is blocked by now
                    await proc.stdin.send_all(b"go\n")
                    written_at = float(await _line(proc.stdout))
            assert woke_at[0] - written_at < 0.5
        finally:
            with trio.CancelScope(shield=True):
                await proc.wait()
