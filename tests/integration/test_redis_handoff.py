"""The publish script hands new messages to an idle waiting claim (issue 19):
one hop from the producer to the worker instead of wake, then claim. What
must hold: a handed message is leased as a claimed one is (renewed, acked,
taken over when its holder dies), a registration nobody hears or that has
lapsed is never handed anything, a cancelled claim stops its handoffs, and
bytes on the handoff channel that do not parse lose nothing."""

from __future__ import annotations

import functools
import logging
from typing import Any

import pytest
import trio

import stem
from stem._envelope import Envelope
from stem.adapters.redis._broker import RedisBroker, _handed_deliveries
from stem.contracts import Delivery, Revocation

pytestmark = pytest.mark.redis


async def _raw(backend: Any, *command: Any) -> Any:
    def fill(pipe: Any) -> None:
        pipe.execute_command(*command)

    _, replies = await backend.conn.execute(fill, atomic=False)
    return replies[0]


async def _registrations(backend: Any, queue: str) -> dict[bytes, bytes]:
    found: dict[bytes, bytes] = await _raw(
        backend, "HGETALL", backend.broker.keys.idle(queue)
    )
    return found


async def _wait_registered(backend: Any, queue: str, consumer: str) -> None:
    with trio.fail_after(10):
        while consumer.encode() not in await _registrations(backend, queue):
            await trio.sleep(0.01)


async def _claim_into(
    backend: Any, got: list[Delivery], consumer: str, **kw: Any
) -> None:
    """A claim of queue "q" waiting up to 10 s; its deliveries into ``got``."""
    kw.setdefault("limit", 5)
    kw.setdefault("lease", 30)
    got.extend(await backend.broker.claim(["q"], consumer=consumer, wait=10, **kw))


def _counting_receipts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Spy on the brokers' handoffs: the consumers they were handed to."""
    seen: list[str] = []
    received = RedisBroker._received

    def spy(self: RedisBroker, consumer: str, data: Any) -> None:
        seen.append(consumer)
        received(self, consumer, data)

    monkeypatch.setattr(RedisBroker, "_received", spy)
    return seen


async def test_an_idle_claim_is_handed_a_publish_from_another_client(
    redis_backend_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The waiting claim returns the message the other process published,
    handed (no claim script after the publish); the delivery is leased like
    a claimed one: its lease renews, its ack removes it, and its revocation
    was checked in the same script."""
    async with redis_backend_factory() as worker:
        ns = worker.settings.namespace
        async with redis_backend_factory(namespace=ns) as producer:
            handed = _counting_receipts(monkeypatch)
            got: list[Delivery] = []

            async with trio.open_nursery() as nursery:
                nursery.start_soon(_claim_into, worker, got, "w1")
                await _wait_registered(producer, "q", "w1")
                await producer.broker.publish([Envelope(id="a", name="t", queue="q")])
            assert handed == ["w1"]
            (delivery,) = got
            assert delivery.task_id == "a" and delivery.delivery_count == 1
            assert delivery.revocation_checked and delivery.revocation is None
            assert delivery.lease_until > stem.now() + 20
            # One of the registration's five was spent (it lapses, or the
            # worker's next claim renews or drops it).
            (left,) = (await _registrations(producer, "q")).values()
            assert left.startswith(b"4|")
            stats = await producer.broker.stats("q")
            assert (stats.pending, stats.in_flight) == (0, 1)
            assert await worker.broker.extend([delivery], 60) == [True]
            await worker.broker.ack([delivery])
            stats = await producer.broker.stats("q")
            assert (stats.pending, stats.in_flight) == (0, 0)


async def test_a_handed_message_carries_its_revocation(
    redis_backend_factory: Any,
) -> None:
    async with redis_backend_factory() as worker:
        await worker.revocations.revoke(Revocation(task_id="r", reason="stop"))
        got: list[Delivery] = []

        async with trio.open_nursery() as nursery:
            nursery.start_soon(_claim_into, worker, got, "w")
            await _wait_registered(worker, "q", "w")
            await worker.broker.publish([Envelope(id="r", name="t", queue="q")])
        (delivery,) = got
        assert delivery.revocation_checked
        assert delivery.revocation is not None
        assert delivery.revocation.reason == "stop"


async def test_a_batch_is_handed_highest_priority_first_up_to_the_limit(
    redis_backend_factory: Any,
) -> None:
    """A claim registered for 2 gets the two highest of three; the third
    stays queued for anyone (and the wake is sent for it)."""
    async with redis_backend_factory() as worker:
        got: list[Delivery] = []

        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                functools.partial(_claim_into, worker, got, "w", limit=2)
            )
            await _wait_registered(worker, "q", "w")
            await worker.broker.publish(
                [
                    Envelope(id="low", name="t", queue="q", priority=0),
                    Envelope(id="high", name="t", queue="q", priority=9),
                    Envelope(id="mid", name="t", queue="q", priority=5),
                ]
            )
        assert [d.task_id for d in got] == ["high", "mid"]
        rest = await worker.broker.claim(["q"], limit=5, lease=30, consumer="other")
        assert [d.task_id for d in rest] == ["low"]


async def test_one_message_goes_to_one_of_two_waiting_claims(
    redis_backend_factory: Any,
) -> None:
    async with redis_backend_factory() as worker:
        got: dict[str, list[Delivery]] = {"a": [], "b": []}

        async def claim(consumer: str) -> None:
            got[consumer].extend(
                await worker.broker.claim(
                    ["q"], limit=5, lease=30, consumer=consumer, wait=1.5
                )
            )

        async with trio.open_nursery() as nursery:
            nursery.start_soon(claim, "a")
            nursery.start_soon(claim, "b")
            await _wait_registered(worker, "q", "a")
            await _wait_registered(worker, "q", "b")
            await worker.broker.publish([Envelope(id="only", name="t", queue="q")])
        assert sorted(len(v) for v in got.values()) == [0, 1]


async def test_a_cancelled_claim_drops_its_registration(
    redis_backend_factory: Any,
) -> None:
    """Once the waiting claim is cancelled (a paused queue, a stopping
    worker) no publish leases anything to it: the next message is there
    for any claim."""
    async with redis_backend_factory() as worker:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_claim_into, worker, [], "w")
            await _wait_registered(worker, "q", "w")
            nursery.cancel_scope.cancel()
        assert await _registrations(worker, "q") == {}
        await worker.broker.publish([Envelope(id="m", name="t", queue="q")])
        got = await worker.broker.claim(["q"], limit=5, lease=30, consumer="x")
        assert [d.task_id for d in got] == ["m"]


@pytest.mark.parametrize(
    "spec",
    [
        # nobody subscribes to this channel (a worker that died)
        "5|30.0|{upto}|nobody-hears-this",
        # lapsed: registered until a time already past
        "5|30.0|{past}|{channel}",
        # not a registration this backend wrote
        "many|30.0|{upto}|{channel}",
        "5|soon|{upto}|{channel}",
    ],
)
async def test_a_registration_that_cannot_be_served_is_dropped(
    redis_backend_factory: Any, spec: str
) -> None:
    """A publish drops it and leases nothing: the message stays ready."""
    async with redis_backend_factory() as backend:
        broker = backend.broker
        channel = broker.keys.hand("ghost")
        await backend.hub.ensure(channel)  # someone hears it (but see spec)
        text = spec.format(upto=stem.now() + 60, past=stem.now() - 1, channel=channel)
        await _raw(backend, "HSET", broker.keys.idle("q"), "ghost", text)
        await broker.publish([Envelope(id="m", name="t", queue="q")])
        assert await _registrations(backend, "q") == {}
        stats = await broker.stats("q")
        assert (stats.pending, stats.in_flight) == (1, 0)


async def test_handoff_off_keeps_the_wake_and_claim(redis_backend_factory: Any) -> None:
    """``handoff=false``: a waiting claim registers nothing and still gets
    the message (woken, then claiming)."""
    async with redis_backend_factory(handoff=False) as backend:
        assert backend.broker.handoff is False
        got: list[Delivery] = []

        async with trio.open_nursery() as nursery:
            nursery.start_soon(_claim_into, backend, got, "w")
            await trio.sleep(0.2)
            assert await _registrations(backend, "q") == {}
            await backend.broker.publish([Envelope(id="m", name="t", queue="q")])
        assert [d.task_id for d in got] == ["m"]


async def test_bytes_on_the_handoff_channel_that_do_not_parse_lose_nothing(
    redis_backend_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Garbage published to a waiting claim's channel is dropped with a
    warning; the claim goes on and gets the next real message."""
    async with redis_backend_factory() as backend:
        got: list[Delivery] = []

        with caplog.at_level(logging.WARNING, logger="stem.redis"):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_claim_into, backend, got, "w")
                await _wait_registered(backend, "q", "w")
                await _raw(backend, "PUBLISH", backend.broker.keys.hand("w"), "99:x")
                await trio.sleep(0.1)
                assert got == []
                await backend.broker.publish([Envelope(id="m", name="t", queue="q")])
        assert [d.task_id for d in got] == ["m"]
        assert "handoff that does not parse" in caplog.text


async def test_a_handed_message_whose_holder_is_gone_comes_back_after_its_lease(
    redis_backend_factory: Any,
) -> None:
    """The holder took the handed message and died before settling it: as
    with a claimed one, another claim takes it over once the lease is out
    (delivery count 2); nothing is lost."""
    async with redis_backend_factory() as backend:
        got: list[Delivery] = []

        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                functools.partial(_claim_into, backend, got, "dies", lease=0.3)
            )
            await _wait_registered(backend, "q", "dies")
            await backend.broker.publish([Envelope(id="m", name="t", queue="q")])
        assert [d.task_id for d in got] == ["m"]
        await trio.sleep(0.4)
        (again,) = await backend.broker.claim(["q"], limit=5, lease=30, consumer="heir")
        assert again.task_id == "m" and again.delivery_count == 2
        await backend.broker.ack([got[0]])  # a stale receipt: ignored
        assert (await backend.broker.stats("q")).in_flight == 1
        await backend.broker.ack([again])
        assert (await backend.broker.stats("q")).in_flight == 0


async def test_a_handed_delivery_past_its_lease_is_never_returned(
    redis_backend_factory: Any,
) -> None:
    """One handed while no claim was waiting and kept past its lease is
    dropped from the buffer (another claim may hold it by now)."""
    async with redis_backend_factory() as backend:
        broker = backend.broker
        body = b'{"v":1,"id":"old","name":"t","queue":"q"}'
        fields = [b"q", str(stem.now() - 1).encode()]
        fields += [b"0", b"1-0", b"0", b"1", body, b"old", b""]
        broker._received("w", b"".join(b"%d:%s" % (len(f), f) for f in fields))
        assert broker._handed.holds("w")
        assert await broker.claim(["q"], limit=5, lease=30, consumer="w") == []
        assert not broker._handed.holds("w")


def _payload(*fields: bytes) -> bytes:
    return b"".join(b"%d:%s" % (len(f), f) for f in fields)


_ROW = (b"0", b"1-0", b"0", b"1", b'{"v":1,"id":"a","name":"t"}', b"a", b"")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not a netstring",
        b"5:short",
        b"x:abc",
        b"12345678901234:a",
        _payload(b"q", b"1.0"),  # no entry
        _payload(b"q", b"1.0", *_ROW[:6]),  # a row cut short
        _payload(b"q", b"nan", *_ROW),
        _payload(b"q", b"soon", *_ROW),
        _payload(b"\xff", b"1.0", *_ROW),
        _payload(b"q", b"1.0", *_ROW) + b"3:",
        "text, not bytes",
    ],
)
def test_handoff_payloads_are_decoded_totally(data: Any) -> None:
    with pytest.raises((TypeError, ValueError, UnicodeDecodeError)):
        _handed_deliveries("w", data, 0.0)


def test_a_body_that_does_not_decode_is_handed_for_the_dead_letter_queue() -> None:
    """The entry itself is leased: a body the worker cannot decode comes as
    a delivery with its decode error (the worker dead-letters it)."""
    row = (b"0", b"1-0", b"0", b"1", b"\x00garbage", b"", b"")
    (delivery,) = _handed_deliveries("w", _payload(b"q", b"5.0", *row), 0.0)
    assert delivery.envelope is None and delivery.decode_error
    assert delivery.lease_until == 5.0 and not delivery.revocation_checked
