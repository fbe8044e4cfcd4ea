"""Contract checks for the broker: publish, claim, ack, nack, leases, delays,
priorities, waiting claims, poison messages, dead letters, purge, broadcast.

Each check is a plain coroutine ``async def check_<behaviour>(h: Harness)``
(in the manner of ``trio.testing.check_one_way_stream``): give it a
:class:`Harness` around a fresh, empty backend and a ``MockClock``. Time moves
only through ``h.advance``; leases are short (1-2 s) so backends that follow
the server's clock stay fast. A check that needs a capability the backend lacks
skips with the reason (``h.require``), never passes silently. The same
conventions hold in the other ``_checks_*`` modules.
"""

from __future__ import annotations

from typing import Any

import trio
import trio.lowlevel

import stem
from stem import ErrorInfo
from stem._codec import encode_envelope
from stem._urls import redact
from stem.contracts import (
    Broker,
    CombinedPublish,
    DeadLetter,
    Delivery,
    HeartbeatStore,
    LockStore,
    RateLimitStore,
    ResultBackend,
    RevocationStore,
)

from ._harness import Harness
from ._skip import skip

LEASE = 2.0
TIME_EPS = 1e-3


def _dead(d: Delivery, *, reason: str = "max-retries-exhausted") -> DeadLetter:
    env = d.envelope
    return DeadLetter(
        task_id=d.task_id,
        name=env.name if env else "",
        queue=d.queue,
        reason=reason,
        error=ErrorInfo(type="ValueError", message="boom", traceback="Traceback..."),
        attempts=env.attempt if env else 1,
        dead_at=stem.now(),
        envelope=env,
        raw=d.raw,
        history=({"type": "ValueError", "message": "boom", "traceback": ""},),
    )


async def _claim(
    h: Harness,
    queues: list[str] | None = None,
    *,
    limit: int = 100,
    lease: float = LEASE,
    consumer: str = "contract",
    wait: float = 0.0,
) -> list[Delivery]:
    return list(
        await h.broker.claim(
            queues or ["default"],
            limit=limit,
            lease=lease,
            consumer=consumer,
            wait=wait,
        )
    )


async def _stats(h: Harness, queue: str = "default") -> tuple[int, int, int, int]:
    s = await h.broker.stats(queue)
    assert s.queue == queue
    return (s.pending, s.delayed, s.in_flight, s.dead)


async def _dead_letter_one(
    h: Harness, queue: str = "default", **env_kw: Any
) -> Delivery:
    await h.broker.publish([h.envelope(queue=queue, **env_kw)])
    [d] = await _claim(h, [queue], limit=1)
    assert await h.broker.dead_letter(d, _dead(d)) is True
    return d


# ---------------------------------------------------------------------------
# Backend shape


async def check_backend_shape(h: Harness) -> None:
    """The backend exposes every store, a capability record and a safe URL."""
    b = h.backend
    assert isinstance(b.broker, Broker)
    assert isinstance(b.results, ResultBackend)
    assert isinstance(b.locks, LockStore)
    assert isinstance(b.revocations, RevocationStore)
    assert isinstance(b.heartbeats, HeartbeatStore)
    assert isinstance(b.limiter, RateLimitStore)
    assert isinstance(b.capabilities.name, str)
    assert b.capabilities.name
    assert isinstance(b.url, str)
    assert redact(b.url) == b.url, "the URL shows a password"


# ---------------------------------------------------------------------------
# Broker: publish, claim, ack, routing, stats


async def check_publish_claim_ack(h: Harness) -> None:
    """Published envelopes are claimed once each, intact, then acked away."""
    envs = [h.envelope() for _ in range(3)]
    await h.broker.publish(envs)
    before = stem.now()
    ds = await _claim(h, limit=10)
    assert sorted(d.task_id for d in ds) == sorted(e.id for e in envs)
    by_id = {e.id: e for e in envs}
    for d in ds:
        assert d.envelope == by_id[d.task_id]
        assert d.queue == "default"
        assert d.delivery_count == 1
        assert d.raw is None
        assert d.decode_error is None
        assert abs(d.lease_until - (before + LEASE)) < 0.5
    assert len({d.receipt for d in ds}) == 3
    assert await _stats(h) == (0, 0, 3, 0)
    await h.broker.ack(ds)
    assert await _stats(h) == (0, 0, 0, 0)
    assert await _claim(h) == []
    await h.advance(LEASE + 1)
    assert await _claim(h) == [], "an acked message came back"


async def check_receipts_unique_across_queues(h: Harness) -> None:
    """Messages of eight queues published in one batch get eight distinct
    receipts (a worker tracks its leases by receipt), and each settles its
    own message only."""
    queues = [f"rq{i}" for i in range(8)]
    envs = [h.envelope(queue=q) for q in queues]
    await h.broker.publish(envs)
    ds = await _claim(h, queues, limit=100)
    assert sorted(d.task_id for d in ds) == sorted(e.id for e in envs)
    assert len({d.receipt for d in ds}) == len(queues)
    first, rest = ds[0], ds[1:]
    await h.broker.ack([first])
    assert (await h.broker.stats(first.queue)).in_flight == 0
    for d in rest:
        assert (await h.broker.stats(d.queue)).in_flight == 1
    await h.broker.ack(rest)
    for q in queues:
        assert (await h.broker.stats(q)).in_flight == 0


async def check_envelope_fields_roundtrip(h: Harness) -> None:
    """Every envelope field survives the broker unchanged."""
    env = h.envelope(
        args={"to": "a@b.c", "nested": {"list": [1, 2.5, "x", None, True]}},
        headers={"traceparent": "00-abc-def-01", "x-user": "é"},
        max_retries=4,
        attempt=2,
        expires=stem.now() + 3600,
        meta={"history": [{"type": "E", "message": "m"}], "unique_key": "k"},
        priority=3,
    )
    await h.broker.publish([env])
    [d] = await _claim(h)
    assert d.envelope == env


async def check_queue_routing(h: Harness) -> None:
    """A message is delivered only from its own queue; queues are served in
    the order the claim names them."""
    a = [h.envelope(queue="alpha") for _ in range(2)]
    b = [h.envelope(queue="beta") for _ in range(2)]
    await h.broker.publish([a[0], b[0], a[1], b[1]])
    assert await _claim(h, ["gamma"]) == []
    got_a = await _claim(h, ["alpha"], limit=1)
    assert [d.task_id for d in got_a] == [a[0].id]
    assert got_a[0].queue == "alpha"
    both = await _claim(h, ["beta", "alpha"], limit=10)
    assert [d.task_id for d in both] == [b[0].id, b[1].id, a[1].id]
    assert [d.queue for d in both] == ["beta", "beta", "alpha"]
    names = await h.broker.queues()
    assert {"alpha", "beta"} <= set(names)


async def check_stats_counts(h: Harness) -> None:
    """stats counts pending, delayed, in-flight and dead messages."""
    await h.broker.publish([h.envelope() for _ in range(3)])
    await h.broker.publish([h.envelope(delay=60) for _ in range(2)])
    assert await _stats(h) == (3, 2, 0, 0)
    [d1, d2] = await _claim(h, limit=2)
    assert await _stats(h) == (1, 2, 2, 0)
    assert await h.broker.dead_letter(d2, _dead(d2)) is True
    assert await _stats(h) == (1, 2, 1, 1)
    await h.broker.ack([d1])
    assert await _stats(h) == (1, 2, 0, 1)
    empty = await h.broker.stats("nothing-here")
    assert (empty.pending, empty.delayed, empty.in_flight, empty.dead) == (0, 0, 0, 0)


async def check_claim_limit(h: Harness) -> None:
    """claim never returns more than ``limit`` messages."""
    await h.broker.publish([h.envelope() for _ in range(5)])
    assert len(await _claim(h, limit=2)) == 2
    assert len(await _claim(h, limit=1)) == 1
    assert len(await _claim(h, limit=10)) == 2
    assert await _claim(h, limit=10) == []


# ---------------------------------------------------------------------------
# Broker: nack


async def check_nack_requeue(h: Harness) -> None:
    """A nacked message comes straight back with a new receipt."""
    env = h.envelope()
    await h.broker.publish([env])
    [d1] = await _claim(h)
    assert await h.broker.nack(d1, requeue=True) is True
    assert await _stats(h) == (1, 0, 0, 0)
    [d2] = await _claim(h)
    assert d2.task_id == env.id
    assert d2.envelope == env
    assert d2.receipt != d1.receipt
    assert d2.delivery_count == 2


async def check_nack_requeue_delay_and_envelope(h: Harness) -> None:
    """A retry (nack with delay and the next attempt's envelope) comes back
    after the delay, with the same id and the new attempt."""
    env = h.envelope(max_retries=3)
    await h.broker.publish([env])
    [d1] = await _claim(h)
    retry = env.next_attempt(
        not_before=stem.now() + 1.0,
        error={"type": "ValueError", "message": "boom", "traceback": ""},
    )
    assert await h.broker.nack(d1, requeue=True, delay=1.0, envelope=retry) is True
    assert await _claim(h) == []
    assert await _stats(h) == (0, 1, 0, 0)
    await h.advance(1.5)
    [d2] = await _claim(h)
    assert d2.task_id == env.id
    assert d2.envelope is not None
    assert d2.envelope.attempt == 2
    assert d2.envelope == retry
    assert len(d2.envelope.meta["history"]) == 1


async def check_nack_without_requeue_drops(h: Harness) -> None:
    """nack(requeue=False) drops the message for good."""
    await h.broker.publish([h.envelope()])
    [d] = await _claim(h)
    assert await h.broker.nack(d, requeue=False) is True
    assert await _stats(h) == (0, 0, 0, 0)
    await h.advance(LEASE + 1)
    assert await _claim(h) == []
    assert await h.broker.list_dead("default") == []


# ---------------------------------------------------------------------------
# Broker: leases


async def check_unacked_comes_back_after_lease(h: Harness) -> None:
    """An unacked delivery is delivered again after its lease, with
    delivery_count 2 and a new receipt; not before."""
    env = h.envelope()
    await h.broker.publish([env])
    [d1] = await _claim(h, lease=1.0)
    await h.advance(0.5)
    assert await _claim(h, consumer="other") == []
    await h.advance(1.0)
    [d2] = await _claim(h, consumer="other")
    assert d2.task_id == env.id
    assert d2.envelope == env
    assert d2.delivery_count == 2
    assert d2.receipt != d1.receipt


async def check_extend_delays_redelivery(h: Harness) -> None:
    """Extending a lease keeps the message from being delivered again until
    the new deadline."""
    await h.broker.publish([h.envelope()])
    [d] = await _claim(h, lease=LEASE)
    await h.advance(1.5)
    assert await h.broker.extend([d], LEASE) == [True]
    await h.advance(1.5)  # past the first deadline (2.0), before the new (3.5)
    assert await _claim(h, consumer="other") == []
    assert await _stats(h) == (0, 0, 1, 0)
    await h.advance(1.5)
    [again] = await _claim(h, consumer="other")
    assert again.task_id == d.task_id
    assert again.delivery_count == 2


async def check_stale_receipt_changes_nothing(h: Harness) -> None:
    """Once a lease expired and the message was claimed again, the old
    receipt's ack, nack, extend and dead_letter change nothing."""
    await h.broker.publish([h.envelope()])
    [old] = await _claim(h, lease=1.0)
    await h.advance(1.5)
    [new] = await _claim(h, lease=LEASE, consumer="other")
    assert new.task_id == old.task_id
    assert new.receipt != old.receipt
    await h.broker.ack([old])
    assert await _stats(h) == (0, 0, 1, 0)
    assert await h.broker.nack(old, requeue=True) is False
    assert await h.broker.nack(old, requeue=False) is False
    assert await _stats(h) == (0, 0, 1, 0)
    assert await h.broker.extend([old, new], LEASE) == [False, True]
    assert await h.broker.dead_letter(old, _dead(old)) is False
    assert await _stats(h) == (0, 0, 1, 0)
    assert await h.broker.list_dead("default") == []
    assert await _claim(h, consumer="third") == []
    await h.broker.ack([new])
    assert await _stats(h) == (0, 0, 0, 0)


async def check_delayed_invisible_until_due(h: Harness) -> None:
    """A message whose not_before is in the future is invisible until then."""
    env = h.envelope(delay=2.0)
    await h.broker.publish([env])
    assert await _claim(h) == []
    assert await _stats(h) == (0, 1, 0, 0)
    await h.advance(1.0)
    assert await _claim(h) == []
    await h.advance(1.5)
    [d] = await _claim(h)
    assert d.task_id == env.id


async def check_priority_ordering(h: Harness) -> None:
    """Higher priority first (9, 5, 0), FIFO within a priority."""
    envs = [h.envelope(priority=p) for p in (0, 5, 9, 5, 0, 9)]
    await h.broker.publish(envs)
    ds = await _claim(h, limit=10)
    expected = [envs[2], envs[5], envs[1], envs[3], envs[0], envs[4]]
    assert [d.task_id for d in ds] == [e.id for e in expected]


async def check_priority_fifo_across_publishes(h: Harness) -> None:
    """Within a priority, earlier publishes are claimed first, one at a time."""
    envs = [h.envelope(priority=5) for _ in range(4)]
    for env in envs:
        await h.broker.publish([env])
    got = [(await _claim(h, limit=1))[0].task_id for _ in envs]
    assert got == [e.id for e in envs]


async def check_due_delayed_ordered_by_priority(h: Harness) -> None:
    """A delayed message, once due, takes its place by priority."""
    low = h.envelope(priority=0)
    high = h.envelope(priority=9, delay=1.0)
    await h.broker.publish([low, high])
    await h.advance(1.5)
    ds = await _claim(h, limit=10)
    assert [d.task_id for d in ds] == [high.id, low.id]


# ---------------------------------------------------------------------------
# Broker: waiting claims


async def check_claim_wait_woken_by_publish(h: Harness) -> None:
    """A waiting claim is woken by a publish from another task (no clock
    movement needed)."""
    env = h.envelope()
    async with trio.open_nursery() as nursery:
        pending = h.start(nursery, _claim, h, wait=30.0)
        await h.settle()
        assert not pending.done.is_set(), "claim returned before any publish"
        await h.broker.publish([env])
        await h.eventually(pending.done.is_set, "claim woken by publish")
    assert [d.task_id for d in pending.result()] == [env.id]


async def check_claim_wait_woken_when_delayed_due(h: Harness) -> None:
    """A waiting claim returns a delayed message once it falls due."""
    env = h.envelope(delay=1.0)
    await h.broker.publish([env])
    async with trio.open_nursery() as nursery:
        pending = h.start(nursery, _claim, h, wait=30.0)
        await h.settle()
        assert not pending.done.is_set()
        await h.advance_until(pending, step=0.5, limit=10.0, what="delayed wakeup")
    assert [d.task_id for d in pending.result()] == [env.id]


async def check_claim_wait_times_out(h: Harness) -> None:
    """A waiting claim returns [] once its wait passes, not before."""
    async with trio.open_nursery() as nursery:
        pending = h.start(nursery, _claim, h, wait=2.0)
        await h.settle()
        await h.advance(1.0)
        assert not pending.done.is_set(), "claim gave up before its wait"
        moved = await h.advance_until(pending, step=0.5, limit=10.0, what="timeout")
    assert 1.0 + moved >= 2.0
    assert pending.result() == []


async def check_claim_wait_woken_on_any_named_queue(h: Harness) -> None:
    """A claim waiting on several queues is woken by a publish to any of them."""
    env = h.envelope(queue="second")
    async with trio.open_nursery() as nursery:
        pending = h.start(nursery, _claim, h, ["first", "second"], wait=30.0)
        await h.settle()
        assert not pending.done.is_set()
        await h.broker.publish([env])
        await h.eventually(pending.done.is_set, "claim woken by publish")
    [d] = pending.result()
    assert d.task_id == env.id
    assert d.queue == "second"


async def check_claim_wait_woken_by_nack(h: Harness) -> None:
    """A waiting claim is woken when a leased message is nacked back."""
    await h.broker.publish([h.envelope()])
    [d] = await _claim(h)
    async with trio.open_nursery() as nursery:
        pending = h.start(nursery, _claim, h, wait=30.0, consumer="other")
        await h.settle()
        assert not pending.done.is_set()
        assert await h.broker.nack(d, requeue=True) is True
        await h.eventually(pending.done.is_set, "claim woken by nack")
    [again] = pending.result()
    assert again.task_id == d.task_id


async def check_claim_wait_woken_by_lease_expiry(h: Harness) -> None:
    """A waiting claim picks up a message whose lease expired meanwhile."""
    await h.broker.publish([h.envelope()])
    [d] = await _claim(h, lease=1.0)
    async with trio.open_nursery() as nursery:
        pending = h.start(nursery, _claim, h, wait=30.0, consumer="other")
        await h.settle()
        assert not pending.done.is_set()
        await h.advance_until(pending, step=0.5, limit=15.0, what="lease expiry")
    [again] = pending.result()
    assert again.task_id == d.task_id
    assert again.delivery_count == 2


async def check_waiting_consumers_share_one_message(h: Harness) -> None:
    """Two waiting claims and one publish: one gets it, the other keeps
    waiting and then times out empty."""
    env = h.envelope()
    async with trio.open_nursery() as nursery:
        first = h.start(nursery, _claim, h, wait=2.0, lease=60.0, consumer="a")
        second = h.start(nursery, _claim, h, wait=2.0, lease=60.0, consumer="b")
        await h.settle()
        await h.broker.publish([env])
        await h.eventually(
            lambda: first.done.is_set() or second.done.is_set(), "a claim woken"
        )
        await h.advance(2.5)
        await h.eventually(
            lambda: first.done.is_set() and second.done.is_set(), "both claims done"
        )
    got = [d.task_id for d in (*first.result(), *second.result())]
    assert got == [env.id]


async def check_concurrent_consumers_exclusive(h: Harness) -> None:
    """Many consumers claiming at once never get the same live delivery."""
    envs = [h.envelope() for _ in range(200)]
    await h.broker.publish(envs)
    seen: list[str] = []

    async def consumer(i: int) -> None:
        while True:
            ds = await _claim(h, limit=7, consumer=f"c{i}", lease=60.0)
            if not ds:
                return
            seen.extend(d.task_id for d in ds)
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        for i in range(10):
            nursery.start_soon(consumer, i)
    assert len(seen) == len(set(seen)), "a live delivery was handed out twice"
    assert sorted(seen) == sorted(e.id for e in envs)


# ---------------------------------------------------------------------------
# Broker: poison messages


async def check_publish_raw_garbage_decode_error(h: Harness) -> None:
    """A body that cannot be decoded is delivered with decode_error and raw,
    and can be dead-lettered with its body."""
    body = b"\xffnot json at all"
    await h.broker.publish_raw("default", body)
    [d] = await _claim(h)
    assert d.envelope is None
    assert d.raw == body
    assert isinstance(d.decode_error, str)
    assert d.decode_error
    assert isinstance(d.task_id, str)
    assert await h.broker.dead_letter(d, _dead(d, reason="decode-error")) is True
    [entry] = await h.broker.list_dead("default")
    assert entry.envelope is None
    assert entry.raw == body
    assert entry.reason == "decode-error"
    assert await _claim(h) == []


async def check_publish_raw_valid_body(h: Harness) -> None:
    """A foreign producer's well-formed body is delivered as an envelope."""
    env = h.envelope(queue="foreign")
    await h.broker.publish_raw("foreign", encode_envelope(env))
    [d] = await _claim(h, ["foreign"])
    assert d.envelope == env
    assert d.task_id == env.id
    assert d.decode_error is None


# ---------------------------------------------------------------------------
# Broker: dead letters


async def check_dead_letter_list_get(h: Harness) -> None:
    """dead_letter removes the message and records the entry, listed oldest
    first with every field kept; get_dead finds it by id."""
    ds = []
    for _ in range(3):
        ds.append(await _dead_letter_one(h, attempt=3, max_retries=2))
        await h.advance(0.5)
    entries = await h.broker.list_dead("default")
    assert [e.task_id for e in entries] == [d.task_id for d in ds]
    first = entries[0]
    expected = _dead(ds[0])
    assert first.name == expected.name
    assert first.queue == "default"
    assert first.reason == "max-retries-exhausted"
    assert first.error == expected.error
    assert first.attempts == 3
    assert first.envelope == ds[0].envelope
    assert [dict(x) for x in first.history] == [dict(x) for x in expected.history]
    assert entries[0].dead_at < entries[1].dead_at < entries[2].dead_at
    page = await h.broker.list_dead("default", limit=1, offset=1)
    assert [e.task_id for e in page] == [ds[1].task_id]
    got = await h.broker.get_dead("default", ds[2].task_id)
    assert got is not None
    assert got.task_id == ds[2].task_id
    assert await h.broker.get_dead("default", "no-such-id") is None
    assert await h.broker.get_dead("other", ds[0].task_id) is None
    assert await _stats(h) == (0, 0, 0, 3)
    await h.advance(LEASE + 1)
    assert await _claim(h) == [], "a dead-lettered message was delivered again"


async def check_replay_dead_dry_run_changes_nothing(h: Harness) -> None:
    """replay_dead(dry_run=True) names what it would replay and changes nothing."""
    d = await _dead_letter_one(h)
    assert await h.broker.replay_dead("default", dry_run=True) == [d.task_id]
    assert [e.task_id for e in await h.broker.list_dead("default")] == [d.task_id]
    assert await _claim(h) == []
    assert await _stats(h) == (0, 0, 0, 1)


async def check_replay_dead_fresh_attempt(h: Harness) -> None:
    """A replayed dead letter comes back as attempt 1 with the same id."""
    d = await _dead_letter_one(h, attempt=3, max_retries=2)
    assert await h.broker.replay_dead("default") == [d.task_id]
    assert await h.broker.list_dead("default") == []
    [again] = await _claim(h)
    assert again.task_id == d.task_id
    assert again.envelope is not None
    assert d.envelope is not None
    assert again.envelope.id == d.envelope.id
    assert again.envelope.attempt == 1
    assert again.envelope.name == d.envelope.name
    assert again.envelope.args == d.envelope.args


async def check_replay_dead_delay(h: Harness) -> None:
    """replay_dead(delay=d) makes the task visible only after d seconds."""
    d = await _dead_letter_one(h)
    assert await h.broker.replay_dead("default", delay=2.0) == [d.task_id]
    assert await _claim(h) == []
    assert await _stats(h) == (0, 1, 0, 0)
    await h.advance(1.0)
    assert await _claim(h) == []
    await h.advance(1.5)
    [again] = await _claim(h)
    assert again.task_id == d.task_id


async def check_replay_dead_filters(h: Harness) -> None:
    """replay_dead honours task_ids, since and limit."""
    first = await _dead_letter_one(h)
    await h.advance(1.0)
    cut = stem.now()
    second = await _dead_letter_one(h)
    third = await _dead_letter_one(h)
    assert await h.broker.replay_dead("default", since=cut, dry_run=True) == [
        second.task_id,
        third.task_id,
    ]
    assert await h.broker.replay_dead("default", limit=1, dry_run=True) == [
        first.task_id
    ]
    chosen = await h.broker.replay_dead("default", task_ids=[third.task_id])
    assert chosen == [third.task_id]
    remaining = [e.task_id for e in await h.broker.list_dead("default")]
    assert remaining == [first.task_id, second.task_id]
    [d] = await _claim(h)
    assert d.task_id == third.task_id
    assert await h.broker.replay_dead("default", since=cut, limit=5) == [second.task_id]
    assert [e.task_id for e in await h.broker.list_dead("default")] == [first.task_id]


async def check_dead_letter_again_after_replay(h: Harness) -> None:
    """A replayed task that dies again has one dead-letter entry, the latest."""
    d = await _dead_letter_one(h)
    await h.advance(1.0)
    assert await h.broker.replay_dead("default") == [d.task_id]
    [again] = await _claim(h)
    entry = _dead(again, reason="rejected")
    assert await h.broker.dead_letter(again, entry) is True
    [only] = await h.broker.list_dead("default")
    assert only.task_id == d.task_id
    assert only.reason == "rejected"
    assert abs(only.dead_at - entry.dead_at) < TIME_EPS
    assert await _stats(h) == (0, 0, 0, 1)


async def check_replay_dead_skips_undecodable(h: Harness) -> None:
    """Undecodable dead letters are never replayed."""
    await h.broker.publish_raw("default", b"{broken")
    [d] = await _claim(h)
    assert await h.broker.dead_letter(d, _dead(d, reason="decode-error")) is True
    assert await h.broker.replay_dead("default") == []
    assert len(await h.broker.list_dead("default")) == 1
    assert await _claim(h) == []


async def check_purge_dead(h: Harness) -> None:
    """purge_dead deletes oldest first, honouring since and limit."""
    a = await _dead_letter_one(h)
    await h.advance(1.0)
    cut = stem.now()
    b = await _dead_letter_one(h)
    c = await _dead_letter_one(h)
    assert await h.broker.purge_dead("default", since=cut, limit=1) == 1
    remaining = [e.task_id for e in await h.broker.list_dead("default")]
    assert remaining == [a.task_id, c.task_id]
    assert b.task_id not in remaining
    assert await h.broker.purge_dead("default") == 2
    assert await h.broker.list_dead("default") == []
    assert await h.broker.purge_dead("default") == 0


# ---------------------------------------------------------------------------
# Broker: purge


async def check_purge_queue_leaves_in_flight(h: Harness) -> None:
    """purge deletes pending and delayed messages, not leased ones."""
    await h.broker.publish([h.envelope() for _ in range(3)])
    await h.broker.publish([h.envelope(delay=60.0)])
    await h.broker.publish([h.envelope(queue="other")])
    [leased] = await _claim(h, limit=1)
    assert await h.broker.purge("default") == 3
    assert await _stats(h) == (0, 0, 1, 0)
    assert await _stats(h, "other") == (1, 0, 0, 0)
    assert await h.broker.nack(leased, requeue=True) is True
    [again] = await _claim(h)
    assert again.task_id == leased.task_id


# ---------------------------------------------------------------------------
# Broker: broadcast


async def check_broadcast_fan_out(h: Harness) -> None:
    """Every current subscriber receives every broadcast."""
    h.require("broadcast")
    message = {"command": "ping", "n": 1, "args": {"x": [1, 2]}}
    async with h.broker.subscribe() as first, h.broker.subscribe() as second:
        await h.broker.broadcast(message)
        await h.broker.broadcast({"command": "shutdown"})
        for channel in (first, second):
            assert await channel.receive() == message
            assert await channel.receive() == {"command": "shutdown"}


# ---------------------------------------------------------------------------
# Enqueue by task id (CombinedPublish.create_and_publish)


def _queued(env: stem.Envelope) -> stem.TaskResult:
    return stem.TaskResult(
        task_id=env.id,
        state=stem.TaskState.QUEUED,
        name=env.name,
        queue=env.queue,
        updated_at=stem.now(),
    )


def _require_combined(h: Harness) -> None:
    if not isinstance(h.backend, CombinedPublish):
        skip(
            f"backend {h.backend.capabilities.name!r} offers no create_and_publish "
            "(stem.contracts.CombinedPublish): enqueueing by task id is then two "
            "calls, not atomic across a crash"
        )


async def _enqueue(
    h: Harness, *envs: stem.Envelope, ttl: float | None = None
) -> list[bool]:
    backend = h.backend
    assert isinstance(backend, CombinedPublish)
    flags = await backend.create_and_publish(
        [_queued(e) for e in envs], ttl=ttl, envelopes=list(envs)
    )
    return list(flags)


async def check_create_and_publish_queues_an_id_once(h: Harness) -> None:
    """create_and_publish queues a message only if its task id has no live
    record: a second enqueue of a queued, running or finished (within its
    ttl) id queues nothing; after the ttl it queues again."""
    _require_combined(h)
    first = h.envelope()
    assert await _enqueue(h, first) == [True]
    copy = h.envelope(task_id=first.id, args={"copy": 1})
    assert await _enqueue(h, copy) == [False]
    assert await _stats(h) == (1, 0, 0, 0)
    [d] = await _claim(h)
    assert d.envelope is not None
    assert d.envelope.args == first.args
    assert await _enqueue(h, copy) == [False]  # running
    done = _queued(first)
    await h.results.set_state(
        [
            stem.TaskResult(
                task_id=done.task_id, state=stem.TaskState.SUCCEEDED, value=1
            )
        ],
        ttl=3.0,
    )
    await h.broker.ack([d])
    assert await _enqueue(h, copy) == [False]  # finished, within its ttl
    assert await _stats(h) == (0, 0, 0, 0)
    await h.advance(3.5)
    assert await _enqueue(h, copy) == [True]
    [again] = await _claim(h)
    assert again.envelope is not None
    assert again.envelope.args == {"copy": 1}
    delayed, twin = h.envelope(delay=60), h.envelope()
    same = h.envelope(task_id=twin.id)
    assert await _enqueue(h, delayed, twin, same) == [True, True, False]
    assert await _stats(h) == (1, 1, 1, 0)


async def check_create_and_publish_single_winner(h: Harness) -> None:
    """Producers racing to enqueue one task id queue exactly one message."""
    _require_combined(h)
    env = h.envelope()
    wins: list[int] = []

    async def produce(i: int) -> None:
        copy = h.envelope(task_id=env.id, args={"producer": i})
        if await _enqueue(h, copy) == [True]:
            wins.append(i)

    async with trio.open_nursery() as nursery:
        for i in range(12):
            nursery.start_soon(produce, i)
    assert len(wins) == 1
    deliveries = await _claim(h)
    assert [d.task_id for d in deliveries] == [env.id]
    assert deliveries[0].envelope is not None
    assert deliveries[0].envelope.args == {"producer": wins[0]}


async def check_remove_deletes_waiting_messages_only(h: Harness) -> None:
    """remove deletes the pending and delayed messages of the named tasks (a
    revoked task's), keeps a leased one and everything else, and tolerates
    unknown ids, queues and undecodable bodies."""
    a, b, c, d = h.envelope(), h.envelope(), h.envelope(delay=60), h.envelope()
    await h.broker.publish([a, b, c, d])
    await h.broker.publish_raw("default", b"{not an envelope")
    [leased] = await _claim(h, limit=1)
    assert leased.task_id == a.id
    removed = await h.broker.remove("default", [a.id, b.id, c.id, "missing"])
    assert removed == 2
    assert await _stats(h) == (2, 0, 1, 0)  # d and the raw body; a leased
    assert await h.broker.remove("default", []) == 0
    assert await h.broker.remove("nowhere", [d.id]) == 0
    rest = await _claim(h)
    assert sorted(x.task_id for x in rest if x.envelope is not None) == [d.id]
