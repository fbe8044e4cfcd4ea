"""Memory-backend specifics the contract suite does not cover: options,
object identity (no encoding), wakeups without polling, bounded broadcast
buffers, lazy expiry and compaction."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import stem
from stem import TaskResult, TaskState
from stem._ids import new_id
from stem._urls import open_backend as open_from_url
from stem.adapters.memory import MemoryBackend, open_backend


def _env(**kw: object) -> stem.Envelope:
    return stem.Envelope(id=new_id(), name="t", **kw)  # type: ignore[arg-type]


class _StepCounter(trio.abc.Instrument):
    def __init__(self) -> None:
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps += 1


async def test_open_from_url_gives_a_fresh_memory_backend() -> None:
    """memory:// opens an independent, empty MemoryBackend each time."""
    async with open_from_url("memory://") as one, open_backend() as two:
        assert isinstance(one, MemoryBackend)
        assert one.capabilities.name == "memory"
        assert one.capabilities.cross_process is False
        assert one.capabilities.persistent is False
        assert one.url == "memory://"
        await one.broker.publish([_env()])
        assert (await two.broker.stats("default")).pending == 0


async def test_bad_url_and_unknown_option_are_config_errors() -> None:
    """A non-memory URL, an unknown option or a bad buffer size is refused."""
    with pytest.raises(stem.ConfigError, match="memory://"):
        async with open_backend("redis://localhost"):
            pass
    with pytest.raises(stem.ConfigError, match="pool_size"):
        async with open_backend("memory://", pool_size=3):
            pass
    with pytest.raises(stem.ConfigError, match="broadcast_buffer"):
        async with open_backend("memory://", broadcast_buffer=0):
            pass


async def test_envelopes_are_stored_as_objects() -> None:
    """The broker hands back the very envelope published (no encode/decode)."""
    async with open_backend() as b:
        env = _env(args={"x": 1})
        await b.broker.publish([env])
        [d] = await b.broker.claim(["default"], limit=1, lease=5, consumer="c")
        assert d.envelope is env


async def test_raw_body_is_decoded_once_at_claim() -> None:
    """A valid raw body is decoded at its first claim and kept decoded."""
    from stem._codec import encode_envelope

    async with open_backend() as b:
        env = _env()
        await b.broker.publish_raw("default", encode_envelope(env))
        [d1] = await b.broker.claim(["default"], limit=1, lease=5, consumer="c")
        assert d1.envelope == env
        await b.broker.nack(d1)
        [d2] = await b.broker.claim(["default"], limit=1, lease=5, consumer="c")
        assert d2.envelope is d1.envelope
        assert d2.delivery_count == 2


async def test_waiting_claim_does_not_poll(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An empty claim waiting 1000 s sleeps (a few task steps), then returns []."""
    counter = _StepCounter()
    trio.lowlevel.add_instrument(counter)
    try:
        async with open_backend() as b:
            start = trio.current_time()
            got = await b.broker.claim(
                ["default"], limit=1, lease=5, consumer="c", wait=1000
            )
            assert got == []
            assert trio.current_time() - start == pytest.approx(1000)
    finally:
        trio.lowlevel.remove_instrument(counter)
    assert counter.steps < 100


async def test_waiting_claim_wakes_exactly_when_delayed_due(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A waiting claim sleeps until the earliest not_before, not a poll tick."""
    async with open_backend() as b:
        env = _env(not_before=stem.now() + 7.0)
        await b.broker.publish([env])
        start = trio.current_time()
        [d] = await b.broker.claim(
            ["default"], limit=5, lease=5, consumer="c", wait=100
        )
        assert d.task_id == env.id
        assert trio.current_time() - start == pytest.approx(7.0)


async def test_cancelled_waiting_claim_loses_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Cancelling a waiting claim leaves no waiter behind and no message leased."""
    async with open_backend() as b:
        with trio.move_on_after(1):
            await b.broker.claim(["default"], limit=1, lease=5, consumer="c", wait=50)
        assert all(not q.waiters for q in b.broker._queues.values())
        await b.broker.publish([_env()])
        stats = await b.broker.stats("default")
        assert (stats.pending, stats.in_flight) == (1, 0)


async def test_expired_lease_keeps_priority_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A message back from an expired lease is ordered by its priority."""
    async with open_backend() as b:
        high = _env(priority=9)
        await b.broker.publish([high])
        await b.broker.claim(["default"], limit=1, lease=1, consumer="c")
        low = _env(priority=0)
        await b.broker.publish([low])
        await trio.sleep(2)
        ds = await b.broker.claim(["default"], limit=5, lease=1, consumer="c")
        assert [d.task_id for d in ds] == [high.id, low.id]


async def test_lease_heap_is_compacted_after_acks() -> None:
    """Acked leases do not pile up in the expiry heap."""
    async with open_backend() as b:
        for _ in range(50):
            await b.broker.publish([_env() for _ in range(100)])
            ds = await b.broker.claim(["default"], limit=100, lease=300, consumer="c")
            await b.broker.ack(ds)
        q = b.broker._queues["default"]
        assert not q.leases
        assert len(q.lease_heap) <= 200


async def test_full_subscriber_drops_and_counts_without_blocking() -> None:
    """A subscriber whose buffer is full misses messages (counted); the
    publisher never blocks and other subscribers get everything."""
    async with open_backend(broadcast_buffer=2) as b:
        async with b.broker.subscribe() as slow, b.broker.subscribe() as fast:
            got_fast = []
            for i in range(5):
                with trio.fail_after(1):
                    await b.broker.broadcast({"n": i})
                got_fast.append(await fast.receive())
            assert [m["n"] for m in got_fast] == [0, 1, 2, 3, 4]
            assert [(await slow.receive())["n"] for _ in range(2)] == [0, 1]
            stats = b.broker.broadcast_statistics()
            assert stats.subscribers == 2
            assert stats.dropped == 3
        assert b.broker.broadcast_statistics().subscribers == 0


async def test_broadcast_gives_each_subscriber_its_own_copy() -> None:
    """Subscribers get independent dicts; non-JSON messages are refused."""
    async with (
        open_backend() as b,
        b.broker.subscribe() as one,
        b.broker.subscribe() as two,
    ):
        await b.broker.broadcast({"a": [1]})
        m1, m2 = await one.receive(), await two.receive()
        m1["a"].append(2)
        assert m2 == {"a": [1]}
        with pytest.raises(stem.EncodeError):
            await b.broker.broadcast({"bad": object()})


async def test_closing_the_backend_ends_subscriptions() -> None:
    """When the backend closes, subscribers see the end of the channel."""
    async with open_backend() as b, b.broker.subscribe() as channel:
        await b.aclose()
        with pytest.raises(trio.EndOfChannel):
            await channel.receive()


async def test_one_write_wakes_every_waiter() -> None:
    """Several waiters on one task are all woken by the terminal write."""
    async with open_backend() as b:
        got: list[TaskResult | None] = []

        async def waiter() -> None:
            got.append(await b.results.wait("t", timeout=30))

        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            await b.results.set_state(
                [TaskResult(task_id="t", state=TaskState.SUCCEEDED)]
            )
        assert len(got) == 5
        assert all(r is not None and r.ok for r in got)


async def test_expired_result_is_purged_on_read(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A record past its ttl is dropped from memory when read, and a terminal
    record past its ttl no longer blocks a new write."""
    async with open_backend() as b:
        res = TaskResult(task_id="t", state=TaskState.SUCCEEDED)
        await b.results.set_state([res], ttl=1)
        await trio.sleep(2)
        assert await b.results.set_state([res]) == [True]
        await b.results.forget("t")
        await b.results.set_state([res], ttl=1)
        await trio.sleep(2)
        assert await b.results.get("t") is None
        assert "t" not in b.results._records


async def test_zero_rate_never_refills() -> None:
    """A bucket with rate 0 says it will never have a token again."""
    async with open_backend() as b:
        assert await b.limiter.take("k", rate=0.0, burst=1) == 0.0
        assert await b.limiter.take("k", rate=0.0, burst=1) == float("inf")
