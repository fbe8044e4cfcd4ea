"""Postgres restarted (and stopped) under publish/claim traffic."""

from __future__ import annotations

import pytest
import trio

from stem._envelope import Envelope
from stem._errors import BrokerUnavailable
from stem._result import TaskResult
from stem._states import TaskState
from stem.adapters.postgres import open_backend
from tests.fixtures_postgres import fresh_schema_url

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

TOTAL = 3000
BATCH = 25
RETRY_TIMEOUT = 2.0


async def test_restart_mid_traffic_loses_nothing(postgres_cluster_factory) -> None:
    """With Postgres restarted mid-way through publish/claim traffic and then
    stopped for a while, every message is eventually claimed and acked,
    claimers and result waiters resume, and a publish during the outage
    raises BrokerUnavailable within a bounded time."""
    cluster = postgres_cluster_factory()
    url = fresh_schema_url(cluster.url)
    acked: set[str] = set()
    published: set[str] = set()
    outage_errors: list[float] = []
    restarted = trio.Event()

    async with (
        open_backend(url, retry_timeout=RETRY_TIMEOUT, poll_interval=0.5) as backend,
        open_backend(url, retry_timeout=RETRY_TIMEOUT, poll_interval=0.5) as other,
    ):
        broker = backend.broker

        async def produce() -> None:
            for start in range(0, TOTAL, BATCH):
                batch = [
                    Envelope(id=f"m{i:05d}", name="noop")
                    for i in range(start, start + BATCH)
                ]
                while True:
                    try:
                        await broker.publish(batch)
                        break
                    except BrokerUnavailable:
                        await trio.sleep(0.1)
                published.update(e.id for e in batch)
                await trio.sleep(0.002)

        async def consume() -> None:
            while len(acked) < TOTAL:
                try:
                    batch = await broker.claim(
                        ["default"], limit=50, lease=3.0, consumer="c", wait=0.5
                    )
                    if batch:
                        await broker.ack(batch)
                        acked.update(d.task_id for d in batch)
                except BrokerUnavailable:
                    await trio.sleep(0.1)

        async def wait_across_restart() -> None:
            # Started before the restart, answered after it by another backend.
            result = await backend.results.wait("survivor", timeout=60)
            assert result is not None
            assert result.value == "ok"

        async def chaos() -> None:
            while len(acked) < TOTAL // 4:
                await trio.sleep(0.05)
            await trio.to_thread.run_sync(cluster.restart)
            restarted.set()
            while len(acked) < TOTAL // 2:
                await trio.sleep(0.05)
            await trio.to_thread.run_sync(cluster.stop)
            start = trio.current_time()
            with pytest.raises(BrokerUnavailable):
                await other.broker.publish([Envelope(id="during-outage", name="x")])
            outage_errors.append(trio.current_time() - start)
            await trio.sleep(1.0)
            await trio.to_thread.run_sync(cluster.start)

        async def write_result() -> None:
            await restarted.wait()
            while True:
                try:
                    await other.results.set_state(
                        [
                            TaskResult(
                                task_id="survivor",
                                state=TaskState.SUCCEEDED,
                                value="ok",
                            )
                        ]
                    )
                    return
                except BrokerUnavailable:
                    await trio.sleep(0.1)

        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(produce)
                for _ in range(3):
                    nursery.start_soon(consume)
                nursery.start_soon(wait_across_restart)
                nursery.start_soon(chaos)
                nursery.start_soon(write_result)

        assert acked == published == {f"m{i:05d}" for i in range(TOTAL)}
        assert len(outage_errors) == 1
        assert outage_errors[0] <= RETRY_TIMEOUT + 2.0, outage_errors
        # The LISTEN connection came back: wakeups work again.
        assert backend.hub.reconnects >= 1
        stats = await broker.stats("default")
        assert (stats.pending, stats.in_flight) == (0, 0)
