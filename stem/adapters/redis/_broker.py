"""The broker on Redis Streams with one consumer group per priority stream.

Layout per queue (all keys share the queue's hash tag): ten streams, one per
priority 0..9, read highest first; a sorted set of delayed messages (score
``not_before``, bodies in a hash) moved into the streams by Lua when due; a
sorted set of lease deadlines (member ``bucket|entry id``, score in client
time); dead letters in a hash plus a sorted set ordered by arrival.

The lease is the pending entry (PEL) of the consumer group: claiming moves a
new entry into the PEL with ``XREADGROUP``, an expired lease is taken over with
``XCLAIM`` (delivery count + 1), a renewal is ``XCLAIM ... JUSTID`` to the same
consumer (idle reset, count unchanged, never a copy). The deadline lives in the
lease sorted set, scored by the client's clock, so ``MockClock`` drives leases
and ``Capabilities.server_clock`` stays False. A receipt is
``<len>:<queue>|bucket|entry id|consumer|delivery count`` (the scripts read
what follows the queue); every settle checks with
``XPENDING`` that the entry is still owned by that consumer with that count,
which makes a stale receipt harmless.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import attrs
import trio
from redis.crc import key_slot

from stem import _redelivery
from stem._clock import now
from stem._codec import (
    decode_envelope,
    decode_object,
    dumps,
    encode_envelope,
    envelope_to_dict,
    undecodable,
)
from stem._envelope import Envelope
from stem._errors import DecodeError
from stem._handed import Handed
from stem.contracts import DeadLetter, Delivery, QueueStats, Revocation

from ._conn import Conn, Keys, evalsha, fmt
from ._hub import Hub
from ._stores import revocation_live, revocation_record

logger = logging.getLogger("stem.redis")

#: Longest a waiting claim sleeps without re-checking (a lost wake costs this).
MAX_NAP = 2.0


def _text(value: Any) -> str:
    """Text of a Redis reply; bytes that are not UTF-8 (someone else's) map
    to surrogates, so :func:`_key` turns them back into the same bytes."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return str(value)


def _key(text: str) -> bytes:
    """The bytes of a member read with :func:`_text`."""
    return text.encode("utf-8", "surrogateescape")


def _whole(value: Any) -> int:
    """A count read from Redis; anything that is not a whole number is 0."""
    try:
        return max(int(_text(value)), 0)
    except (TypeError, ValueError, UnicodeDecodeError):
        return 0


def _receipt(queue: str, wire: str) -> str:
    """A delivery's receipt: the queue (length-prefixed), then what the
    scripts read (``bucket|entry id|consumer|count``). Stream entry ids are
    only unique within a stream: two queues written in the same millisecond
    hand out the same ids, and receipts must not collide across queues (the
    worker tracks its leases by receipt)."""
    return f"{len(queue)}:{queue}|{wire}"


def _wire(receipt: str) -> str:
    """The scripts' part of a receipt made by :func:`_receipt`."""
    size, _, rest = receipt.partition(":")
    return rest[int(size) + 1 :] if size.isdigit() else receipt


def _parse_receipt(receipt: str) -> tuple[str, str, str, str]:
    bucket, entry_id, rest = _wire(receipt).split("|", 2)
    consumer, count = rest.rsplit("|", 1)
    return bucket, entry_id, consumer, count


def _ready_at(env: Envelope) -> str:
    return fmt(env.not_before) if env.not_before is not None else "0"


def _bucket(priority: int) -> str:
    return str(min(max(int(priority), 0), 9))


@attrs.define(eq=False)
class RedisBroker:
    """:class:`stem.contracts.Broker` on Redis Streams."""

    conn: Conn
    keys: Keys
    hub: Hub
    #: hand new messages to idle waiting claims in the publish script (one
    #: Redis only: the queue's keys and the revocations share no slot on a
    #: cluster); see ``_scripts.handoff``
    handoff: bool = False
    _watched: set[str] = attrs.field(factory=set)
    #: consumers whose handoff channel this process hears
    _hands: set[str] = attrs.field(factory=set)
    #: deliveries handed to consumers that no claim has returned yet
    _handed: Handed = attrs.field(factory=Handed)

    # ---------------------------------------------------------------- publish

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        """Store the batch in one round trip (MULTI/EXEC: all or nothing on a
        single Redis; per queue on a cluster). Encoding errors raise first."""
        by_queue = self.publish_args(envelopes)
        if by_queue:
            await self._publish(by_queue)

    async def publish_raw(self, queue: str, body: bytes) -> None:
        await self._publish({queue: ["0", "0", body]})  # type: ignore[list-item]

    def publish_args(self, envelopes: Sequence[Envelope]) -> dict[str, list[str]]:
        """The script arguments of ``envelopes``, per queue (encodes them)."""
        by_queue: dict[str, list[str]] = {}
        for env in envelopes:
            args = by_queue.setdefault(env.queue, [])
            args += [_bucket(env.priority), _ready_at(env)]
            args.append(encode_envelope(env))  # type: ignore[arg-type]
        return by_queue

    def queue_publish(self, pipe: Any, by_queue: dict[str, list[str]]) -> None:
        """Add the commands publishing ``by_queue`` to ``pipe``."""
        keys = self.keys
        at = fmt(now())
        pipe.sadd(keys.queues, *by_queue)
        for queue, args in by_queue.items():
            evalsha(
                pipe,
                "publish",
                keys.queue(queue) + self._handoff_keys(queue),
                [at, keys.wake(queue), queue, *args],
            )

    def _handoff_keys(self, queue: str) -> list[str]:
        """The keys a publish script needs to hand ``queue``'s new messages
        to idle claims (none when handoff is off)."""
        if not self.handoff:
            return []
        return [self.keys.idle(queue), self.keys.revocations[0]]

    def queue_create_publish(
        self,
        pipe: Any,
        envelopes: Sequence[Envelope],
        records: Sequence[bytes],
        *,
        expires: str,
        expiry: str,
    ) -> list[tuple[str, list[int]]]:
        """Add to ``pipe`` one ``create_publish`` script call per queue: each
        envelope is published only if its QUEUED record (``records[i]``,
        stored under its task id) is created. Returns, per call, the queue
        and the indexes of its envelopes (the order of the reply's flags)."""
        keys = self.keys
        at = fmt(now())
        by_queue: dict[str, list[int]] = {}
        for index, env in enumerate(envelopes):
            by_queue.setdefault(env.queue, []).append(index)
        pipe.sadd(keys.queues, *by_queue)
        for queue, indexes in by_queue.items():
            args: list[Any] = [at, keys.wake(queue), queue, expires, expiry]
            result_keys = []
            for index in indexes:
                env = envelopes[index]
                args += [_bucket(env.priority), _ready_at(env)]
                args += [encode_envelope(env), records[index]]
                result_keys.append(keys.result(env.id))
            evalsha(
                pipe,
                "create_publish",
                keys.queue(queue) + result_keys + self._handoff_keys(queue),
                args,
            )
        return list(by_queue.items())

    def published(self, queues: Iterable[str]) -> None:
        """Wake this process's waiting claims on ``queues``."""
        for queue in queues:
            self.hub.wake_queue(queue)

    async def _publish(self, by_queue: dict[str, list[str]]) -> None:
        await self.conn.execute(
            lambda pipe: self.queue_publish(pipe, by_queue), atomic=True
        )
        self.published(by_queue)

    # ---------------------------------------------------------------- claim

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

        A waiting claim sleeps on a pub/sub wake (or a local publish), or until
        the earliest delayed message or lease on its queues falls due, capped
        at ``MAX_NAP``. While Redis is away it keeps retrying until ``wait``
        passes (at least ``retry_for``), then raises BrokerUnavailable.
        Cancelled while waiting, nothing is leased; cancelled during the
        script, the batch may be lost to the lease timeout (never a message).
        """
        if limit <= 0 or not queues:
            return []
        deadline = trio.current_time() + max(wait, 0.0)
        handoff = self.handoff and wait > 0
        if wait > 0:
            for queue in queues:
                if queue not in self._watched:
                    self._watched.add(queue)
                    await self.hub.ensure(self.keys.wake(queue))
        if handoff and consumer not in self._hands:
            self._hands.add(consumer)
            channel = self.keys.hand(consumer)
            self.hub.handoffs[channel] = lambda data: self._received(consumer, data)
            await self.hub.ensure(channel)
        try:
            while True:
                event = trio.Event()
                if wait > 0:
                    for queue in queues:
                        self.hub.add(self.hub.queue_waiters, queue, event)
                    self._handed.watch(consumer, event)
                try:
                    out, due = await self._pass(
                        queues, limit, lease, consumer, deadline, handoff
                    )
                    remaining = deadline - trio.current_time()
                    if out or remaining <= 0:
                        return out
                    nap = min(remaining, MAX_NAP)
                    if due is not None:
                        nap = min(nap, max(due - now(), 0.0))
                    with trio.move_on_after(nap):
                        await event.wait()
                finally:
                    if wait > 0:
                        for queue in queues:
                            self.hub.discard(self.hub.queue_waiters, queue, event)
                        self._handed.unwatch(consumer, event)
        except trio.Cancelled:
            if handoff:
                with trio.CancelScope(shield=True), trio.move_on_after(0.5):
                    await self._unregister(queues, consumer)
            raise

    async def _pass(
        self,
        queues: Sequence[str],
        limit: int,
        lease: float,
        consumer: str,
        deadline: float,
        handoff: bool,
    ) -> tuple[list[Delivery], float | None]:
        """One look for messages: those handed to ``consumer``, else a claim
        (which registers for a handoff when ``handoff`` and it finds none)."""
        handed = self._handed.take(consumer, queues, limit)
        if handed:
            return handed, None
        remaining = deadline - trio.current_time()
        register = None
        if handoff and remaining > 0:
            # Registered while this claim may wait (a lapsed registration is
            # never handed anything).
            upto = now() + min(remaining, MAX_NAP)
            register = f"{fmt(lease)}|{fmt(upto)}|{self.keys.hand(consumer)}"
        return await self._claim_once(
            queues, limit, lease, consumer, deadline, register
        )

    async def _unregister(self, queues: Sequence[str], consumer: str) -> None:
        """Drop ``consumer``'s idle registrations (a cancelled claim): no
        publish hands it more. Best effort: a registration lapses anyway."""

        def fill(pipe: Any) -> None:
            for queue in queues:
                pipe.hdel(self.keys.idle(queue), consumer)

        try:
            await self.conn.execute(fill, atomic=False, until=trio.current_time())
        except Exception:  # Redis away, or worse: the registration lapses
            logger.debug(
                "could not drop the idle registration of %r", consumer, exc_info=True
            )

    def _received(self, consumer: str, data: Any) -> None:
        """A publish handed ``consumer`` messages (already leased to it):
        keep them for its claim. Bytes that do not parse are dropped with a
        warning; their leases run out and the messages come back."""
        try:
            deliveries = _handed_deliveries(consumer, data, now())
        except (TypeError, ValueError, UnicodeDecodeError) as exc:
            logger.warning("dropped a handoff that does not parse: %s", exc)
            return
        self._handed.add(consumer, deliveries)

    async def _claim_once(
        self,
        queues: Sequence[str],
        limit: int,
        lease: float,
        consumer: str,
        deadline: float,
        register: str | None = None,
    ) -> tuple[list[Delivery], float | None]:
        out: list[Delivery] = []
        due: float | None = None
        for queue in queues:
            at = now()
            until = at + lease
            keys, args = self._claim_call(queue, limit - len(out), until, at, consumer)
            if self.handoff:
                keys.append(self.keys.idle(queue))
                args.append(register or "")
            reply = await self.conn.script("claim", keys, args, until=deadline)
            next_due, rows = reply
            if next_due:
                value = float(_text(next_due))
                due = value if due is None else min(due, value)
            width = 5 if self.conn.cluster else 7
            for i in range(0, len(rows), width):
                out.append(
                    self._delivery(queue, consumer, until, rows[i : i + width], at=at)
                )
            if len(out) >= limit:
                break
        return out, due

    def _claim_call(
        self, queue: str, limit: int, until: float, at: float, consumer: str
    ) -> tuple[list[str], list[str]]:
        keys = self.keys.queue(queue)
        check = []
        if not self.conn.cluster:
            # One Redis: the claim also reads the claimed ids' revocations
            # (on a cluster that hash lives in another slot).
            keys = [*keys, self.keys.revocations[0]]
            check = ["1"]
        return keys, [fmt(at), str(limit), fmt(until), consumer, *check]

    @staticmethod
    def _delivery(
        queue: str, consumer: str, until: float, row: Sequence[Any], *, at: float
    ) -> Delivery:
        """The delivery of a claimed (or handed) row: bucket, entry id, n,
        delivery count, body, and on one Redis the task id the script read
        and that id's revocation record (see ``_revocation``)."""
        bucket, entry_id, prior, count, body = row[:5]
        count_text = _text(count)
        receipt = _receipt(
            queue, f"{_text(bucket)}|{_text(entry_id)}|{consumer}|{count_text}"
        )
        # ``n`` is a stream field anyone can write: a non-number counts as 0.
        deliveries = _whole(prior) + _whole(count_text)
        raw = bytes(body) if isinstance(body, bytes | bytearray) else b""
        try:
            env = decode_envelope(raw)
        except DecodeError as exc:
            clipped, reason, task_id = undecodable(raw, exc)
            return Delivery(
                receipt=receipt,
                queue=queue,
                task_id=task_id,
                envelope=None,
                lease_until=until,
                delivery_count=deliveries,
                raw=clipped,
                decode_error=reason,
                size=len(raw),
            )
        checked, revocation = (
            _revocation(env, row[5], row[6], at) if len(row) == 7 else (False, None)
        )
        return Delivery(
            receipt=receipt,
            queue=queue,
            task_id=env.id,
            envelope=env,
            lease_until=until,
            delivery_count=deliveries,
            size=len(raw),
            revocation_checked=checked,
            revocation=revocation,
        )

    # ---------------------------------------------------------------- settle

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Remove finished messages (one round trip); stale receipts are
        ignored."""
        by_queue: dict[str, list[str]] = {}
        for delivery in deliveries:
            by_queue.setdefault(delivery.queue, []).append(_wire(delivery.receipt))
        if not by_queue:
            return

        def fill(pipe: Any) -> None:
            for queue, args in by_queue.items():
                evalsha(pipe, "ack", self.keys.queue(queue), args)

        await self.conn.execute(fill, atomic=False)

    async def extend(self, deliveries: Sequence[Delivery], lease: float) -> list[bool]:
        """Renew leases (XCLAIM JUSTID to the same consumer) in one round trip."""
        if not deliveries:
            return []
        until = fmt(now() + lease)
        order: list[tuple[str, int]] = []
        by_queue: dict[str, list[str]] = {}
        for delivery in deliveries:
            args = by_queue.setdefault(delivery.queue, [until])
            order.append((delivery.queue, len(args) - 1))
            args.append(_wire(delivery.receipt))
        names = list(by_queue)

        def fill(pipe: Any) -> None:
            for queue in names:
                evalsha(pipe, "extend", self.keys.queue(queue), by_queue[queue])

        _, replies = await self.conn.execute(fill, atomic=False)
        flags = dict(zip(names, replies, strict=True))
        return [bool(int(flags[queue][index])) for queue, index in order]

    async def nack(
        self,
        delivery: Delivery,
        *,
        requeue: bool = True,
        delay: float = 0.0,
        envelope: Envelope | None = None,
    ) -> bool:
        at = now()
        ready = _redelivery.requeue_at(at, delay=delay, envelope=envelope)
        if envelope is not None:
            body: bytes | str = encode_envelope(envelope)
            bucket = _bucket(envelope.priority)
        else:
            body = ""
            bucket = _parse_receipt(delivery.receipt)[0]
        args = [
            fmt(at),
            self.keys.wake(delivery.queue),
            delivery.queue,
            *_parse_receipt(delivery.receipt),
            "1" if requeue else "0",
            fmt(ready) if ready > at else "0",
            bucket,
            body,
        ]
        done = await self.conn.script("nack", self.keys.queue(delivery.queue), args)
        if done and requeue:
            self.hub.wake_queue(delivery.queue)
        return bool(done)

    async def dead_letter(self, delivery: Delivery, entry: DeadLetter) -> bool:
        """Remove the leased message and record ``entry`` in one script."""
        entry = _redelivery.filed(entry, delivery)
        keys = self.keys.queue(delivery.queue, dead_queue=entry.queue)
        if self.conn.cluster and key_slot(keys[0].encode()) != key_slot(
            keys[-1].encode()
        ):
            return await self._dead_letter_across(delivery, entry)
        args = [*_parse_receipt(delivery.receipt), entry.task_id, _encode_dead(entry)]
        return await self.conn.script("dead", keys, args) is not None

    async def _dead_letter_across(self, delivery: Delivery, entry: DeadLetter) -> bool:
        """Dead-letter into another queue's slot on a cluster: record the
        entry there, then settle the message if its receipt still holds
        (else take the entry back). A crash between the two leaves the entry
        and a message that comes back after its lease: at least once, never
        lost."""
        dead_keys = self.keys.queue(entry.queue)
        added = await self.conn.script("dead_add", dead_keys, [_encode_dead(entry)])
        own = self.keys.queue(delivery.queue)
        settled = await self.conn.script("ack", own, [_wire(delivery.receipt)])
        if int(settled):
            return True
        await self.conn.script("purge_dead", dead_keys, [added])
        return False

    # ---------------------------------------------------------------- dead

    async def _dead_entries(
        self, queue: str, start: int, stop: int
    ) -> list[DeadLetter]:
        """The queue's dead letters from ``start`` to ``stop`` (inclusive;
        -1: the last), oldest first."""
        reply = await self.conn.script(
            "list_dead", self.keys.queue(queue), [str(start), str(stop)]
        )
        members, values = reply
        return [
            _decode_dead(member, value)
            for member, value in zip(members, values, strict=False)
            if value is not None
        ]

    async def list_dead(
        self, queue: str, *, limit: int = 100, offset: int = 0
    ) -> list[DeadLetter]:
        if limit <= 0:
            return []
        start = max(offset, 0)
        return await self._dead_entries(queue, start, start + limit - 1)

    async def get_dead(self, queue: str, task_id: str) -> DeadLetter | None:
        """The newest entry of ``task_id`` (entries are keyed by entry id, so
        this reads the queue's dead letters)."""
        entries = await self._dead_entries(queue, 0, -1)
        return next((e for e in reversed(entries) if e.task_id == task_id), None)

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
        chosen = _redelivery.select_for_replay(
            await self._dead_entries(queue, 0, -1),
            task_ids=task_ids,
            limit=limit,
            since=since,
        )
        if dry_run or not chosen:
            return [entry.task_id for entry in chosen]
        at = now()
        args: list[Any] = [fmt(at), self.keys.wake(queue), queue]
        for entry in chosen:
            assert entry.envelope is not None
            fresh = _redelivery.fresh_for_replay(
                entry.envelope, queue=queue, at=at, delay=delay
            )
            due = _redelivery.due_at(fresh, at)
            args += [
                _key(entry.entry_id),
                _bucket(fresh.priority),
                fmt(due) if due > at else "0",
                encode_envelope(fresh),
            ]
        keys = self.keys

        async def send() -> list[Any]:
            pipe = self.conn.pipeline(atomic=True)
            pipe.sadd(keys.queues, queue)
            evalsha(pipe, "replay", keys.queue(queue), args)
            result: list[Any] = await pipe.execute()
            return result

        await self.conn.run(send)
        self.hub.wake_queue(queue)
        return [entry.task_id for entry in chosen]

    async def purge_dead(
        self, queue: str, *, since: float | None = None, limit: int | None = None
    ) -> int:
        doomed = [
            _key(entry.entry_id)
            for entry in _redelivery.select_for_purge(
                await self._dead_entries(queue, 0, -1),
                limit=limit,
                since=since,
            )
        ]
        if not doomed:
            return 0
        done = await self.conn.script("purge_dead", self.keys.queue(queue), doomed)
        return int(done)

    # ---------------------------------------------------------------- queues

    async def stats(self, queue: str) -> QueueStats:
        reply = await self.conn.script("stats", self.keys.queue(queue), [fmt(now())])
        pending, delayed, in_flight, dead = (int(x) for x in reply)
        return QueueStats(
            queue=queue,
            pending=pending,
            delayed=delayed,
            in_flight=in_flight,
            dead=dead,
        )

    async def queues(self) -> list[str]:
        names = await self.conn.run(lambda: self.conn.client.smembers(self.keys.queues))
        return sorted(_text(name) for name in names)

    async def purge(self, queue: str) -> int:
        return int(await self.conn.script("purge", self.keys.queue(queue), []))

    async def remove(self, queue: str, task_ids: Sequence[str]) -> int:
        """Delete the undelivered stream entries and delayed messages of
        ``task_ids`` (one script; it reads the queue's waiting bodies)."""
        ids = sorted(set(task_ids))
        if not ids:
            return 0
        return int(await self.conn.script("remove", self.keys.queue(queue), ids))

    # ---------------------------------------------------------------- fan-out

    async def broadcast(self, message: Mapping[str, Any]) -> None:
        """PUBLISH to every subscriber of the namespace (each backend's
        listener fans it out to its local subscribers)."""
        text = dumps(dict(message), what="broadcast message")
        await self.conn.run(lambda: self.conn.client.publish(self.keys.broadcast, text))

    def subscribe(
        self,
    ) -> AbstractAsyncContextManager[trio.abc.ReceiveChannel[dict[str, Any]]]:
        """Receive every broadcast sent while subscribed (bounded buffer; a
        full subscriber misses messages, counted in ``Hub.dropped``)."""
        return self.hub.subscribe_broadcast()


def _netstrings(data: bytes) -> list[bytes]:
    """``<size>:<bytes>`` fields one after another (a handoff's payload)."""
    out: list[bytes] = []
    at = 0
    while at < len(data):
        colon = data.find(b":", at, at + 12)
        size = data[at:colon]
        if colon < 0 or not size.isdigit():
            raise ValueError(f"no field size at byte {at}")
        end = colon + 1 + int(size)
        if end > len(data):
            raise ValueError(f"a field runs past the end at byte {at}")
        out.append(data[colon + 1 : end])
        at = end
    return out


#: fields per handed entry: bucket, id, n, count, body, task id, revocation
_HANDED_ROW = 7


def _handed_deliveries(consumer: str, data: Any, at: float) -> list[Delivery]:
    """The deliveries of a handoff payload (see ``_scripts.handoff``)."""
    if not isinstance(data, bytes | bytearray):
        raise TypeError(f"a handoff is bytes, got {type(data).__name__}")
    fields = _netstrings(bytes(data))
    if len(fields) < 2 + _HANDED_ROW or (len(fields) - 2) % _HANDED_ROW:
        raise ValueError(f"{len(fields)} fields is not a handoff")
    queue = fields[0].decode()
    until = float(fields[1])
    if not math.isfinite(until):
        raise ValueError("the lease deadline is not a number")
    out = []
    for i in range(2, len(fields), _HANDED_ROW):
        row: list[bytes | None] = [*fields[i : i + 5]]
        row += [fields[i + 5] or None, fields[i + 6] or None]  # '' read as none
        out.append(RedisBroker._delivery(queue, consumer, until, row, at=at))
    return out


def _revocation(
    env: Envelope, task_id: Any, record: Any, at: float
) -> tuple[bool, Revocation | None]:
    """Whether the script's revocation check holds for ``env``, and the
    live revocation it read. It holds only when the id the script read is
    the envelope's own (a body not in the canonical form is left to the
    worker's lookup), and the record decodes."""
    if task_id is None or _text(task_id) != env.id:
        return False, None
    if record is None:
        return True, None
    try:
        found = revocation_record(bytes(record))
    except DecodeError:
        return False, None  # unreadable: the worker's lookup decides
    return True, found if revocation_live(found, at) else None


def _encode_dead(entry: DeadLetter) -> str:
    return dumps(
        {
            "task_id": entry.task_id,
            "name": entry.name,
            "queue": entry.queue,
            "reason": entry.reason,
            "error": entry.error.to_dict() if entry.error else None,
            "attempts": entry.attempts,
            "dead_at": entry.dead_at,
            "envelope": envelope_to_dict(entry.envelope) if entry.envelope else None,
            "raw": entry.raw.decode("latin-1") if entry.raw is not None else None,
            "history": list(entry.history),
        },
        what="dead letter",
    )


def _decode_dead(member: Any, value: bytes | str) -> DeadLetter:
    """An entry as stored (a JSON object under its entry id), decoded
    totally: a value that is not one is listed with its bytes as ``raw``."""
    entry_id = _text(member)
    try:
        data = decode_object(value, what="dead letter")
    except DecodeError:
        return _redelivery.stored_dead(
            entry_id=entry_id,
            task_id="",
            name="",
            queue="",
            reason="",
            error=None,
            attempts=0,
            dead_at=0.0,
            envelope=None,
            raw=value,
            history=None,
        )
    raw = data.get("raw")
    return _redelivery.stored_dead(
        entry_id=entry_id,
        task_id=data.get("task_id"),
        name=data.get("name"),
        queue=data.get("queue"),
        reason=data.get("reason"),
        error=data.get("error"),
        attempts=data.get("attempts"),
        dead_at=data.get("dead_at"),
        envelope=data.get("envelope"),
        raw=raw.encode("latin-1", "replace") if isinstance(raw, str) else None,
        history=data.get("history"),
    )
