"""The in-memory broker: heaps of ready and delayed messages per queue.

Everything here runs inside one ``trio.run``; no method awaits between reading
and writing the state it changes, so each call is atomic with respect to
cancellation and to other tasks. Envelopes are stored as objects (no encoding).
"""

from __future__ import annotations

import heapq
import itertools
import secrets
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from stem import _redelivery
from stem._clock import now
from stem._codec import decode_envelope, dumps, loads, undecodable
from stem._envelope import Envelope
from stem._errors import DecodeError
from stem.contracts import DeadLetter, Delivery, QueueStats

#: Longest single sleep of a waiting claim before it re-checks (seconds).
#: Longest nap of a waiting claim between looks: every publish, nack and due
#: time wakes it sooner, so this only bounds a missed wake (and keeps an idle
#: claim under MockClock to a few wake-ups per simulated hour).
_MAX_NAP = 600.0

_READY = 0
_DELAYED = 1
_LEASED = 2
_GONE = 3


@attrs.define(eq=False)
class _Message:
    task_id: str
    queue: str
    envelope: Envelope | None
    raw: bytes | None
    priority: int
    state: int = _READY
    delivery_count: int = 0
    receipt: str = ""
    lease_until: float = 0.0


# Heap entries: ready (-priority, ready_at, seq, msg); delayed (not_before, seq,
# msg); leases (lease_until, receipt). ``seq`` is unique, so ``msg`` is never
# compared.
_ReadyEntry = tuple[int, float, int, _Message]
_DelayedEntry = tuple[float, int, _Message]


@attrs.define(eq=False)
class _Queue:
    name: str
    used: bool = False
    ready: list[_ReadyEntry] = attrs.Factory(list)
    delayed: list[_DelayedEntry] = attrs.Factory(list)
    leases: dict[str, _Message] = attrs.Factory(dict)
    lease_heap: list[tuple[float, str]] = attrs.Factory(list)
    dead: dict[str, DeadLetter] = attrs.Factory(dict)
    waiters: dict[trio.Event, None] = attrs.Factory(dict)

    def wake(self) -> None:
        if self.waiters:
            for event in self.waiters:
                event.set()
            self.waiters.clear()

    def earliest_deadline(self) -> float | None:
        """The next time a delayed message becomes due or a lease expires."""
        best: float | None = None
        if self.delayed:
            best = self.delayed[0][0]
        if self.lease_heap:
            first = self.lease_heap[0][0]
            if best is None or first < best:
                best = first
        return best


@attrs.frozen(kw_only=True)
class BroadcastStatistics:
    """Broadcast counters: current subscribers and messages dropped because a
    subscriber's buffer was full."""

    subscribers: int
    dropped: int


class MemoryBroker:
    """A real broker held in process memory (see :class:`stem.contracts.Broker`)."""

    def __init__(self, *, broadcast_buffer: int = 256) -> None:
        self._queues: dict[str, _Queue] = {}
        self._seq = itertools.count()
        self._dead_seq = itertools.count(1)
        self._receipt_prefix = secrets.token_hex(4) + "-"
        self._broadcast_buffer = broadcast_buffer
        self._subscribers: dict[trio.MemorySendChannel[dict[str, Any]], None] = {}
        self._dropped = 0

    # ------------------------------------------------------------------ helpers

    def _queue(self, name: str) -> _Queue:
        q = self._queues.get(name)
        if q is None:
            q = self._queues[name] = _Queue(name)
        return q

    def _enqueue(self, q: _Queue, msg: _Message, ready_at: float, at: float) -> None:
        q.used = True
        if ready_at > at:
            msg.state = _DELAYED
            heapq.heappush(q.delayed, (ready_at, next(self._seq), msg))
        else:
            msg.state = _READY
            heapq.heappush(q.ready, (-msg.priority, ready_at, next(self._seq), msg))

    def _refresh(self, q: _Queue, at: float) -> None:
        """Move due delayed messages to ready and expired leases back to ready."""
        delayed = q.delayed
        while delayed and delayed[0][0] <= at:
            ready_at, seq, msg = heapq.heappop(delayed)
            if msg.state == _DELAYED:
                msg.state = _READY
                heapq.heappush(q.ready, (-msg.priority, ready_at, seq, msg))
        lease_heap = q.lease_heap
        while lease_heap and lease_heap[0][0] <= at:
            _, receipt = heapq.heappop(lease_heap)
            msg_or_none = q.leases.get(receipt)
            if msg_or_none is None or msg_or_none.lease_until > at:
                continue  # acked, or extended (a later entry exists)
            del q.leases[receipt]
            msg_or_none.receipt = ""
            msg_or_none.state = _READY
            seq = next(self._seq)
            heapq.heappush(
                q.ready,
                (-msg_or_none.priority, msg_or_none.lease_until, seq, msg_or_none),
            )

    def _compact_leases(self, q: _Queue) -> None:
        if len(q.lease_heap) > 2 * len(q.leases) + 64:
            q.lease_heap = [(m.lease_until, r) for r, m in q.leases.items()]
            heapq.heapify(q.lease_heap)

    def _take_lease(self, q: _Queue, delivery: Delivery) -> _Message | None:
        msg = q.leases.pop(delivery.receipt, None)
        if msg is not None:
            msg.receipt = ""
            self._compact_leases(q)
        return msg

    def _lookup(self, delivery: Delivery) -> tuple[_Queue, _Message] | None:
        q = self._queues.get(delivery.queue)
        if q is None:
            return None
        msg = q.leases.get(delivery.receipt)
        if msg is None:
            return None
        return q, msg

    # ------------------------------------------------------------------ publish

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        """Store envelopes on their queues (all at once: nothing awaits)."""
        await trio.lowlevel.checkpoint()
        self.publish_nowait(envelopes)

    def publish_nowait(self, envelopes: Iterable[Envelope]) -> None:
        at = now()
        woken: list[_Queue] = []
        queues = self._queues
        for env in envelopes:
            q = queues.get(env.queue)
            if q is None:
                q = self._queue(env.queue)
            msg = _Message(env.id, env.queue, env, None, env.priority)
            not_before = env.not_before
            ready_at = at if not_before is None or not_before <= at else not_before
            self._enqueue(q, msg, ready_at, at)
            if q.waiters:
                woken.append(q)
        for q in woken:
            q.wake()

    async def publish_raw(self, queue: str, body: bytes) -> None:
        """Store a body as a foreign producer would; it is decoded at claim time."""
        await trio.lowlevel.checkpoint()
        at = now()
        q = self._queue(queue)
        self._enqueue(q, _Message("", queue, None, bytes(body), 0), at, at)
        q.wake()

    # ------------------------------------------------------------------ claim

    def claim_nowait(
        self, queues: Sequence[str], *, limit: int, lease: float, consumer: str = ""
    ) -> list[Delivery]:
        """Lease up to ``limit`` ready messages without waiting."""
        out: list[Delivery] = []
        if limit <= 0:
            return out
        at = now()
        until = at + lease
        prefix = self._receipt_prefix
        seq = self._seq
        for name in queues:
            q = self._queues.get(name)
            if q is None:
                continue
            self._refresh(q, at)
            ready = q.ready
            leases = q.leases
            lease_heap = q.lease_heap
            while ready and len(out) < limit:
                msg = heapq.heappop(ready)[3]
                if msg.state != _READY:
                    continue
                receipt = f"{prefix}{next(seq)}"
                msg.state = _LEASED
                msg.receipt = receipt
                msg.lease_until = until
                msg.delivery_count += 1
                leases[receipt] = msg
                heapq.heappush(lease_heap, (until, receipt))
                if msg.envelope is None and msg.raw is not None:
                    out.append(self._raw_delivery(msg, receipt, until))
                else:
                    out.append(
                        Delivery(
                            receipt=receipt,
                            queue=name,
                            task_id=msg.task_id,
                            envelope=msg.envelope,
                            lease_until=until,
                            delivery_count=msg.delivery_count,
                        )
                    )
            if len(out) >= limit:
                break
        return out

    def _raw_delivery(self, msg: _Message, receipt: str, until: float) -> Delivery:
        raw = msg.raw
        assert raw is not None
        try:
            env = decode_envelope(raw)
        except DecodeError as exc:
            clipped, reason, task_id = undecodable(raw, exc)
            return Delivery(
                receipt=receipt,
                queue=msg.queue,
                task_id=task_id,
                envelope=None,
                lease_until=until,
                delivery_count=msg.delivery_count,
                raw=clipped,
                decode_error=reason,
                size=len(raw),
            )
        msg.envelope = env
        msg.raw = None
        msg.task_id = env.id
        return Delivery(
            receipt=receipt,
            queue=msg.queue,
            task_id=env.id,
            envelope=env,
            lease_until=until,
            delivery_count=msg.delivery_count,
        )

    async def claim(
        self,
        queues: Sequence[str],
        *,
        limit: int,
        lease: float,
        consumer: str,
        wait: float = 0.0,
    ) -> list[Delivery]:
        """Lease up to ``limit`` messages, waiting up to ``wait`` seconds.

        A waiting claim sleeps until a publish (or nack, replay) wakes it, or
        until the earliest delayed message or lease on its queues falls due.
        Cancellation while waiting loses nothing (nothing is leased yet).
        """
        await trio.lowlevel.checkpoint()
        out = self.claim_nowait(queues, limit=limit, lease=lease, consumer=consumer)
        if out or wait <= 0:
            return out
        deadline = trio.current_time() + wait
        watched = [self._queue(name) for name in queues]
        while True:
            remaining = deadline - trio.current_time()
            if remaining <= 0:
                return []
            nap = min(remaining, _MAX_NAP)
            at = now()
            for q in watched:
                due = q.earliest_deadline()
                if due is not None:
                    nap = min(nap, max(due - at, 0.0))
            event = trio.Event()
            for q in watched:
                q.waiters[event] = None
            try:
                with trio.move_on_after(nap):
                    await event.wait()
            finally:
                for q in watched:
                    q.waiters.pop(event, None)
            out = self.claim_nowait(queues, limit=limit, lease=lease, consumer=consumer)
            if out:
                return out

    # ------------------------------------------------------------------ settle

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Remove finished messages; stale receipts are ignored."""
        await trio.lowlevel.checkpoint()
        self.ack_nowait(deliveries)

    def ack_nowait(self, deliveries: Iterable[Delivery]) -> None:
        queues = self._queues
        touched: dict[str, _Queue] = {}
        for delivery in deliveries:
            q = queues.get(delivery.queue)
            if q is None:
                continue
            msg = q.leases.pop(delivery.receipt, None)
            if msg is not None:
                msg.state = _GONE
                msg.receipt = ""
                touched[q.name] = q
        for q in touched.values():
            self._compact_leases(q)

    async def nack(
        self,
        delivery: Delivery,
        *,
        requeue: bool = True,
        delay: float = 0.0,
        envelope: Envelope | None = None,
    ) -> bool:
        """Give a leased message back (see :meth:`stem.contracts.Broker.nack`)."""
        await trio.lowlevel.checkpoint()
        q = self._queues.get(delivery.queue)
        if q is None:
            return False
        msg = self._take_lease(q, delivery)
        if msg is None:
            return False
        if not requeue:
            msg.state = _GONE
            return True
        if envelope is not None:
            msg.envelope = envelope
            msg.raw = None
            msg.task_id = envelope.id
            msg.priority = envelope.priority
        at = now()
        ready = _redelivery.requeue_at(at, delay=delay, envelope=envelope)
        self._enqueue(q, msg, ready, at)
        q.wake()
        return True

    async def extend(self, deliveries: Sequence[Delivery], lease: float) -> list[bool]:
        """Renew leases to ``now + lease``; one flag per delivery."""
        await trio.lowlevel.checkpoint()
        until = now() + lease
        flags: list[bool] = []
        touched: dict[str, _Queue] = {}
        for delivery in deliveries:
            found = self._lookup(delivery)
            if found is None:
                flags.append(False)
                continue
            q, msg = found
            msg.lease_until = until
            heapq.heappush(q.lease_heap, (until, delivery.receipt))
            touched[q.name] = q
            flags.append(True)
        for q in touched.values():
            self._compact_leases(q)
        return flags

    async def dead_letter(self, delivery: Delivery, entry: DeadLetter) -> bool:
        """Remove the leased message and record ``entry`` (one step)."""
        await trio.lowlevel.checkpoint()
        q = self._queues.get(delivery.queue)
        if q is None:
            return False
        msg = self._take_lease(q, delivery)
        if msg is None:
            return False
        msg.state = _GONE
        entry = _redelivery.filed(entry, delivery)
        dq = self._queue(entry.queue)
        dq.used = True
        entry_id = str(next(self._dead_seq))
        dq.dead[entry_id] = attrs.evolve(entry, entry_id=entry_id)
        return True

    # ------------------------------------------------------------------ dead

    async def list_dead(
        self, queue: str, *, limit: int = 100, offset: int = 0
    ) -> list[DeadLetter]:
        """Dead letters of a queue, oldest first."""
        await trio.lowlevel.checkpoint()
        q = self._queues.get(queue)
        if q is None:
            return []
        return list(itertools.islice(q.dead.values(), offset, offset + limit))

    async def get_dead(self, queue: str, task_id: str) -> DeadLetter | None:
        await trio.lowlevel.checkpoint()
        q = self._queues.get(queue)
        if q is None:
            return None
        return next(
            (e for e in reversed(q.dead.values()) if e.task_id == task_id), None
        )

    async def replay_dead(
        self,
        queue: str,
        *,
        task_ids: Sequence[str] | None = None,
        limit: int | None = None,
        since: float | None = None,
        delay: float = 0.0,
        dry_run: bool = False,
    ) -> list[str]:
        """Put dead letters back as fresh tasks (attempt 1, same id)."""
        await trio.lowlevel.checkpoint()
        q = self._queues.get(queue)
        if q is None:
            return []
        chosen = _redelivery.select_for_replay(
            q.dead.values(), task_ids=task_ids, limit=limit, since=since
        )
        if dry_run or not chosen:
            return [entry.task_id for entry in chosen]
        at = now()
        for entry in chosen:
            assert entry.envelope is not None
            fresh = _redelivery.fresh_for_replay(
                entry.envelope, queue=queue, at=at, delay=delay
            )
            del q.dead[entry.entry_id]
            msg = _Message(fresh.id, queue, fresh, None, fresh.priority)
            self._enqueue(q, msg, _redelivery.due_at(fresh, at), at)
        q.wake()
        return [entry.task_id for entry in chosen]

    async def purge_dead(
        self, queue: str, *, since: float | None = None, limit: int | None = None
    ) -> int:
        """Delete dead letters (oldest first); returns how many."""
        await trio.lowlevel.checkpoint()
        q = self._queues.get(queue)
        if q is None:
            return 0
        doomed = [
            entry.entry_id
            for entry in _redelivery.select_for_purge(
                q.dead.values(), limit=limit, since=since
            )
        ]
        for entry_id in doomed:
            del q.dead[entry_id]
        return len(doomed)

    # ------------------------------------------------------------------ queues

    async def stats(self, queue: str) -> QueueStats:
        await trio.lowlevel.checkpoint()
        q = self._queues.get(queue)
        if q is None:
            return QueueStats(queue=queue, pending=0, delayed=0, in_flight=0, dead=0)
        self._refresh(q, now())
        return QueueStats(
            queue=queue,
            pending=sum(1 for entry in q.ready if entry[3].state == _READY),
            delayed=sum(1 for entry in q.delayed if entry[2].state == _DELAYED),
            in_flight=len(q.leases),
            dead=len(q.dead),
        )

    async def queues(self) -> list[str]:
        """Names of queues that hold or held messages."""
        await trio.lowlevel.checkpoint()
        return sorted(name for name, q in self._queues.items() if q.used)

    async def purge(self, queue: str) -> int:
        """Delete the queue's pending and delayed messages (not leased ones)."""
        await trio.lowlevel.checkpoint()
        q = self._queues.get(queue)
        if q is None:
            return 0
        count = 0
        for ready_entry in q.ready:
            if ready_entry[3].state == _READY:
                ready_entry[3].state = _GONE
                count += 1
        for delayed_entry in q.delayed:
            if delayed_entry[2].state == _DELAYED:
                delayed_entry[2].state = _GONE
                count += 1
        q.ready.clear()
        q.delayed.clear()
        return count

    async def remove(self, queue: str, task_ids: Sequence[str]) -> int:
        """Delete the pending and delayed messages of ``task_ids`` (marked
        gone where they lie; leased ones are kept)."""
        await trio.lowlevel.checkpoint()
        q = self._queues.get(queue)
        wanted = set(task_ids)
        if q is None or not wanted:
            return 0
        count = 0
        for ready_entry in q.ready:
            msg = ready_entry[3]
            if msg.state == _READY and msg.task_id in wanted:
                msg.state = _GONE
                count += 1
        for delayed_entry in q.delayed:
            msg = delayed_entry[2]
            if msg.state == _DELAYED and msg.task_id in wanted:
                msg.state = _GONE
                count += 1
        return count

    # ------------------------------------------------------------------ fan-out

    async def broadcast(self, message: Mapping[str, Any]) -> None:
        """Send a JSON object to every subscriber; a full subscriber misses it
        (counted in :meth:`broadcast_statistics`), never blocking the sender."""
        await trio.lowlevel.checkpoint()
        text = dumps(dict(message), what="broadcast message")
        for channel in list(self._subscribers):
            try:
                channel.send_nowait(loads(text))
            except trio.WouldBlock:
                self._dropped += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.pop(channel, None)

    @asynccontextmanager
    async def subscribe(
        self,
    ) -> AsyncIterator[trio.MemoryReceiveChannel[dict[str, Any]]]:
        """Receive every broadcast sent while subscribed (bounded buffer)."""
        send, receive = trio.open_memory_channel[dict[str, Any]](self._broadcast_buffer)
        self._subscribers[send] = None
        try:
            async with receive:
                yield receive
        finally:
            self._subscribers.pop(send, None)
            send.close()

    def broadcast_statistics(self) -> BroadcastStatistics:
        return BroadcastStatistics(
            subscribers=len(self._subscribers), dropped=self._dropped
        )

    def close(self) -> None:
        """Close every subscription (their receivers see end of channel)."""
        for channel in list(self._subscribers):
            channel.close()
        self._subscribers.clear()
