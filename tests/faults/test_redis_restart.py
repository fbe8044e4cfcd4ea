"""Redis killed (SIGKILL) and restarted in the middle of publish/claim traffic.

The server runs with ``--appendonly yes --appendfsync always`` so the data
(streams, pending entries, delayed set) survives the kill, as a production
Redis with AOF would; without persistence a restart empties Redis and nothing
can be promised.
"""

from __future__ import annotations

import time

import pytest
import trio

from stem._envelope import Envelope
from stem._errors import BrokerUnavailable
from stem.adapters.redis import open_backend
from tests.fixtures_redis import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.slow]

TOTAL = 600
BATCH = 20
RETRY_FOR = 1.0


@pytest.fixture
def aof_server(tmp_path):
    server = RedisServer(tmp_path, appendonly=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_restart_mid_traffic_loses_nothing(aof_server: RedisServer) -> None:
    """Every message published around a Redis kill + restart is claimed and
    acked; a publish during the outage raises BrokerUnavailable quickly."""
    url = f"{aof_server.url}?namespace=fault"
    ids = [f"task{i:05d}" for i in range(TOTAL)]
    acked: set[str] = set()
    claims = 0
    outage_publish_seconds: list[float] = []
    unavailable_claims = 0
    restarted = trio.Event()

    async with (
        open_backend(url, retry_for=RETRY_FOR) as producer,
        open_backend(url, retry_for=RETRY_FOR) as consumer,
    ):

        async def consume() -> None:
            nonlocal claims, unavailable_claims
            pending_acks = []
            while len(acked) < TOTAL:
                try:
                    if pending_acks:
                        await consumer.broker.ack(pending_acks)
                        acked.update(d.task_id for d in pending_acks)
                        pending_acks = []
                    got = await consumer.broker.claim(
                        ["q"], limit=50, lease=3.0, consumer="w1", wait=1.0
                    )
                    claims += len(got)
                    pending_acks = got
                except BrokerUnavailable:
                    # What a supervised broker actor does: back off, go again.
                    unavailable_claims += 1
                    await trio.sleep(0.2)

        async def produce() -> None:
            for start in range(0, TOTAL, BATCH):
                batch = [
                    Envelope(id=task_id, name="noop", queue="q")
                    for task_id in ids[start : start + BATCH]
                ]
                if start == TOTAL // 2:
                    aof_server.kill()
                    began = time.monotonic()
                    with pytest.raises(BrokerUnavailable):
                        await producer.broker.publish(batch)
                    outage_publish_seconds.append(time.monotonic() - began)
                    await trio.sleep(0.5)  # the consumer also sees the outage
                    await trio.to_thread.run_sync(aof_server.start)
                    restarted.set()
                while True:
                    try:
                        await producer.broker.publish(batch)
                        break
                    except BrokerUnavailable:
                        await trio.sleep(0.2)
                await trio.sleep(0.01)

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(consume)
                nursery.start_soon(produce)

        assert restarted.is_set()
        assert acked == set(ids)
        assert outage_publish_seconds
        assert outage_publish_seconds[0] < RETRY_FOR + 2.0
        stats = await consumer.broker.stats("q")
        assert (stats.pending, stats.in_flight, stats.delayed) == (0, 0, 0)
        # Redeliveries are only those in flight at the kill (bounded by a batch
        # or two), never a storm.
        assert claims - TOTAL <= 100


async def test_waiting_claim_resumes_after_restart(aof_server: RedisServer) -> None:
    """A claim blocked while Redis restarts is woken by a publish made after
    the restart (the listener subscribed again)."""
    url = f"{aof_server.url}?namespace=resume"
    async with (
        open_backend(url, retry_for=RETRY_FOR) as producer,
        open_backend(url, retry_for=RETRY_FOR) as consumer,
    ):
        await consumer.broker.claim(["q"], limit=1, lease=5, consumer="w", wait=0.01)
        aof_server.kill()
        await trio.sleep(0.3)
        await trio.to_thread.run_sync(aof_server.start)
        # Give the listener its reconnect (backoff starts at 50 ms).
        await trio.sleep(0.5)

        async def publish_later() -> None:
            await trio.sleep(0.3)
            await producer.broker.publish([Envelope(id="late", name="noop", queue="q")])

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(publish_later)
                began = time.monotonic()
                got = await consumer.broker.claim(
                    ["q"], limit=1, lease=5, consumer="w", wait=8
                )
                waited = time.monotonic() - began
        assert [d.task_id for d in got] == ["late"]
        assert waited < 1.5
        assert consumer.hub.reconnects >= 1
