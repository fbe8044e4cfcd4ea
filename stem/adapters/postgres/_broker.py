"""The Postgres broker: one ``jobs`` table, SKIP LOCKED claims, NOTIFY wakeups.

A row is claimable when ``ready_at <= now`` (delays) and ``locked_until <
now`` (no live lease). A claim leases up to ``limit`` rows in one statement,
ordered by the position of the queue in the claim, then priority (high
first), then ``ready_at``, then ``id`` (enqueue order); each claim stamps a
fresh token, and a receipt is ``"<id>:<token>"``, so a stale receipt matches
no row and changes nothing. ``now`` is always a parameter (Trio's clock).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import uuid
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, NamedTuple

import attrs
import trio

from stem import _redelivery
from stem._clock import now
from stem._codec import (
    decode_envelope,
    dumps,
    encode_envelope,
    envelope_from_dict,
    envelope_to_dict,
    guess_task_id,
    loads,
    undecodable,
)
from stem._envelope import Envelope
from stem._errors import BrokerUnavailable, DecodeError
from stem._handed import Handed
from stem.contracts import DeadLetter, Delivery, QueueStats, Revocation

from ._config import PostgresConfig
from ._db import Db
from ._notify import Hub

logger = logging.getLogger("stem.postgres")

_NOTIFY_LIMIT = 7900  # NOTIFY payloads must stay under 8000 bytes


def _payloads(names: Sequence[str]) -> list[str]:
    """Newline-joined chunks of ``names``, each short enough for NOTIFY."""
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for name in names:
        length = len(name.encode()) + 1
        if current and size + length > _NOTIFY_LIMIT:
            chunks.append("\n".join(current))
            current, size = [], 0
        current.append(name)
        size += length
    if current:
        chunks.append("\n".join(current))
    return chunks


def _split_receipt(receipt: str) -> tuple[int, str]:
    ident, _, token = receipt.partition(":")
    try:
        return int(ident), token
    except ValueError:
        return -1, token


class _Sql:
    """The broker's statements for one schema."""

    def __init__(self, s: str) -> None:
        self.publish = f"""
            WITH ins AS (
                INSERT INTO {s}.jobs (queue, task_id, priority, ready_at, body)
                SELECT * FROM unnest($1::text[], $2::text[], $3::int2[],
                                     $4::float8[], $5::bytea[])
                RETURNING 1
            ), qs AS (
                INSERT INTO {s}.queues (name) SELECT DISTINCT unnest($1::text[])
                ON CONFLICT DO NOTHING
            )
            SELECT count(pg_notify($6, p)) FROM unnest($7::text[]) p"""
        # With the handoff: each row's id and lease come from hand_off
        # (migration 8), and the wake is sent only if a row was not handed.
        self.publish_handoff = f"""
            WITH ins AS (
                INSERT INTO {s}.jobs (id, queue, task_id, priority, ready_at, body,
                                      locked_until, receipt, delivery_count)
                SELECT h.id, m.queue, m.task_id, m.priority, m.ready_at, m.body,
                       h.locked_until, h.receipt, h.delivery_count
                FROM unnest($1::text[], $2::text[], $3::int2[], $4::float8[],
                            $5::bytea[]) AS m(queue, task_id, priority, ready_at,
                                              body)
                CROSS JOIN LATERAL {s}.hand_off(m.queue, m.task_id, m.body,
                                                 m.ready_at, $8::float8) h
                RETURNING receipt
            ), qs AS (
                INSERT INTO {s}.queues (name) SELECT DISTINCT unnest($1::text[])
                ON CONFLICT DO NOTHING
            )
            SELECT count(pg_notify($6, p)) FROM unnest($7::text[]) p
            WHERE EXISTS (SELECT 1 FROM ins WHERE ins.receipt IS NULL)"""
        self.unregister = f"""
            DELETE FROM {s}.idle WHERE consumer = $1 AND queue = ANY($2::text[])"""
        # The claimed rows with their live revocations (one statement: the
        # worker then needs no lookup of its own, see Delivery.revocation).
        self.claim = f"""
            WITH claimed AS (
            UPDATE {s}.jobs j
            SET locked_until = $4, receipt = $5,
                delivery_count = j.delivery_count + 1
            WHERE j.id = ANY(ARRAY(
                SELECT c.id
                FROM unnest($1::text[]) WITH ORDINALITY AS q(name, ord)
                CROSS JOIN LATERAL (
                    SELECT i.id, i.priority, i.ready_at FROM {s}.jobs i
                    WHERE i.queue = q.name AND i.ready_at <= $2
                      AND i.locked_until < $2
                    ORDER BY i.priority DESC, i.ready_at, i.id
                    LIMIT $3
                    FOR UPDATE SKIP LOCKED
                ) c
                ORDER BY q.ord, c.priority DESC, c.ready_at, c.id
                LIMIT $3
            ))
            RETURNING j.id, j.priority, j.ready_at, j.queue, j.task_id,
                      j.delivery_count, j.body
            )
            SELECT c.id, c.priority, c.ready_at, c.queue, c.task_id,
                   c.delivery_count, c.body,
                   r.terminate, r.reason, r.expires_at, r.version
            FROM claimed c
            LEFT JOIN {s}.revocations r ON r.task_id = c.task_id
              AND (r.expires_at IS NULL OR r.expires_at > $2)"""
        # With the handoff, the claim keeps its consumer's registrations in
        # the same statement: dropped when it claims rows (or will not wait:
        # $8 = 0), else made or renewed (consumer $6, lease $7, registered
        # until $8, channel $9, LISTEN pid $10) for a handoff of up to $3.
        # One statement, so a publish never falls in a gap between a claim
        # and its registration.
        tail = "\n            SELECT c.id, c.priority,"
        head, rest = self.claim.split(tail, 1)
        self.claim_handoff = f"""{head}, gone AS (
                DELETE FROM {s}.idle WHERE consumer = $6
                AND queue = ANY($1::text[])
                AND (EXISTS (SELECT 1 FROM claimed) OR $8::float8 <= 0)
            ), reg AS (
                INSERT INTO {s}.idle AS i (queue, consumer, capacity, lease, upto,
                                           channel, pid)
                SELECT q, $6, $3, $7::float8, $8::float8, $9::text, $10::int4
                FROM unnest($1::text[]) q
                WHERE $8::float8 > 0 AND NOT EXISTS (SELECT 1 FROM claimed)
                ON CONFLICT (queue, consumer) DO UPDATE SET
                    capacity = excluded.capacity, lease = excluded.lease,
                    upto = excluded.upto, channel = excluded.channel,
                    pid = excluded.pid
            ){tail}{rest}"""
        self.next_due = f"""
            SELECT least(
                (SELECT min((SELECT j.ready_at FROM {s}.jobs j
                             WHERE j.queue = q AND j.ready_at > $2
                             ORDER BY j.ready_at LIMIT 1))
                 FROM unnest($1::text[]) q),
                (SELECT min(locked_until) FROM {s}.jobs
                 WHERE queue = ANY($1::text[]) AND locked_until > $2))"""
        self.ack = f"""
            DELETE FROM {s}.jobs j
            USING unnest($1::int8[], $2::text[]) AS r(id, token)
            WHERE j.id = r.id AND j.receipt = r.token"""
        self.drop = f"DELETE FROM {s}.jobs WHERE id = $1 AND receipt = $2 RETURNING 1"
        self.requeue = f"""
            WITH u AS (
                UPDATE {s}.jobs SET locked_until = 0, receipt = NULL, ready_at = $3,
                    body = coalesce($4, body), priority = coalesce($5, priority)
                WHERE id = $1 AND receipt = $2 RETURNING queue
            )
            SELECT queue, pg_notify($6, queue) FROM u"""
        self.extend = f"""
            UPDATE {s}.jobs j SET locked_until = $3
            FROM unnest($1::int8[], $2::text[]) AS r(id, token)
            WHERE j.id = r.id AND j.receipt = r.token RETURNING j.id, j.receipt"""
        self.dead_letter = f"""
            WITH d AS (
                DELETE FROM {s}.jobs WHERE id = $1 AND receipt = $2 RETURNING id
            ), qs AS (
                INSERT INTO {s}.queues (name) SELECT $3 FROM d ON CONFLICT DO NOTHING
            )
            INSERT INTO {s}.dead (queue, task_id, name, reason, error, attempts,
                                  dead_at, envelope, raw, history)
            SELECT $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 FROM d
            RETURNING seq"""
        self.dead_cols = (
            "seq, task_id, name, queue, reason, error, attempts, dead_at, "
            "envelope, raw, history"
        )
        self.list_dead = f"""
            SELECT {self.dead_cols} FROM {s}.dead WHERE queue = $1
            ORDER BY dead_at, seq LIMIT $2 OFFSET $3"""
        self.get_dead = f"""
            SELECT {self.dead_cols} FROM {s}.dead WHERE queue = $1 AND task_id = $2
            ORDER BY dead_at DESC, seq DESC LIMIT 1"""
        # pick_dead and purge_dead state stem._redelivery's selections in SQL
        # (wanted(), capped() and, for a replay, a stored envelope), so that
        # FOR UPDATE locks only the rows taken.
        self.pick_dead = f"""
            SELECT seq, task_id, dead_at, envelope FROM {s}.dead
            WHERE queue = $1 AND envelope IS NOT NULL
              AND ($2::text[] IS NULL OR task_id = ANY($2::text[]))
              AND ($3::float8 IS NULL OR dead_at >= $3)
            ORDER BY dead_at, seq LIMIT $4 FOR UPDATE"""
        self.delete_dead = f"DELETE FROM {s}.dead WHERE seq = ANY($1::int8[])"
        self.purge_dead = f"""
            DELETE FROM {s}.dead WHERE seq IN (
                SELECT seq FROM {s}.dead WHERE queue = $1
                  AND ($2::float8 IS NULL OR dead_at >= $2)
                ORDER BY dead_at, seq LIMIT $3)"""
        self.stats = f"""
            SELECT count(*) FILTER (WHERE locked_until < $2 AND ready_at <= $2),
                   count(*) FILTER (WHERE locked_until < $2 AND ready_at > $2),
                   count(*) FILTER (WHERE locked_until >= $2),
                   (SELECT count(*) FROM {s}.dead WHERE queue = $1)
            FROM {s}.jobs WHERE queue = $1"""
        self.queues = f"SELECT name FROM {s}.queues ORDER BY name"
        self.purge = f"DELETE FROM {s}.jobs WHERE queue = $1 AND locked_until < $2"
        self.remove = f"""
            DELETE FROM {s}.jobs WHERE queue = $1 AND task_id = ANY($2::text[])
            AND locked_until < $3"""
        self.notify = "SELECT pg_notify($1, $2)"


def _hand_channel(schema: str, consumer: str) -> str:
    """The NOTIFY channel of ``consumer``'s handoffs (a channel name must
    stay under 64 bytes, so the consumer is hashed)."""
    digest = hashlib.sha1(f"{schema}\0{consumer}".encode()).hexdigest()[:32]
    return f"stem_hand_{digest}"


def _handed_delivery(payload: str) -> Delivery:
    """The delivery a ``hand_off`` NOTIFY carries (see ``_schema.HAND_OFF``):
    every field checked, the body base64."""
    data = json.loads(payload)
    if not isinstance(data, dict):
        raise TypeError("a handoff is a JSON object")
    queue, ident, token, until, task_id, body64, rev = (
        data[k] for k in ("q", "i", "t", "u", "k", "b", "v")
    )
    if not (isinstance(queue, str) and isinstance(token, str)):
        raise TypeError("a handoff's queue and receipt are text")
    if not (isinstance(task_id, str) and isinstance(body64, str)):
        raise TypeError("a handoff's task id and body are text")
    if isinstance(ident, bool) or not isinstance(ident, int):
        raise TypeError("a handoff's row id is a whole number")
    if isinstance(until, bool) or not isinstance(until, int | float):
        raise TypeError("a handoff's lease deadline is a number")
    if not math.isfinite(until):
        raise ValueError("a handoff's lease deadline is not finite")
    revocation = None
    if rev is not None:
        if not isinstance(rev, list) or len(rev) != 4:
            raise TypeError("a handoff's revocation is a list of four")
        terminate, reason, expires_at, version = rev
        if not isinstance(reason, str) or isinstance(version, bool):
            raise TypeError("a handoff's revocation does not parse")
        if expires_at is not None and not isinstance(expires_at, int | float):
            raise TypeError("a handoff's revocation expiry is a number")
        revocation = Revocation(
            task_id=task_id,
            terminate=bool(terminate),
            reason=reason,
            expires_at=expires_at,
            version=int(version),
        )
    raw = base64.b64decode(body64.replace("\n", ""), validate=True)
    return _delivery(
        f"{ident}:{token}", queue, task_id, 1, raw, float(until), revocation
    )


def _delivery(
    receipt: str,
    queue: str,
    task_id: str,
    count: int,
    raw: bytes,
    lease_until: float,
    revocation: Revocation | None,
) -> Delivery:
    """The delivery of a claimed or handed row; a body that does not decode
    comes with its reason (the worker dead-letters it)."""
    try:
        env = decode_envelope(raw)
    except DecodeError as exc:
        clipped, reason, guessed = undecodable(raw, exc)
        return Delivery(
            receipt=receipt,
            queue=queue,
            task_id=task_id or guessed,
            envelope=None,
            lease_until=lease_until,
            delivery_count=count,
            raw=clipped,
            decode_error=reason,
            size=len(raw),
        )
    return Delivery(
        receipt=receipt,
        queue=queue,
        task_id=task_id or env.id,
        envelope=env,
        lease_until=lease_until,
        delivery_count=count,
        size=len(raw),
        # checked under the row's task id, which a foreign writer may have
        # set apart from the envelope's
        revocation_checked=task_id == env.id,
        revocation=revocation,
    )


class _DeadRow(NamedTuple):
    """A dead letter picked for a replay (``envelope`` None: it no longer
    decodes)."""

    seq: int
    task_id: str
    dead_at: float
    envelope: Envelope | None


def _envelope_or_none(text: str) -> Envelope | None:
    try:
        return envelope_from_dict(loads(text))
    except DecodeError:
        return None


def _count(status: str) -> int:
    try:
        return int(status.rsplit(" ", 1)[-1])
    except ValueError:
        return 0


@attrs.define(eq=False)
class PostgresBroker:
    """:class:`stem.contracts.Broker` on a Postgres ``jobs`` table."""

    config: PostgresConfig
    db: Db
    hub: Hub
    _sql: _Sql = attrs.field(init=False)
    #: consumers whose handoff channel this process LISTENs on
    _hands: set[str] = attrs.field(factory=set)
    #: deliveries handed to consumers that no claim has returned yet
    _handed: Handed = attrs.field(factory=Handed)

    def __attrs_post_init__(self) -> None:
        self._sql = _Sql(self.config.quoted_schema)

    # --------------------------------------------------------------- publish

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        if not envelopes:
            return
        at = now()
        queues: list[str] = []
        task_ids: list[str] = []
        priorities: list[int] = []
        ready: list[float] = []
        bodies: list[bytes] = []
        for env in envelopes:
            queues.append(env.queue)
            task_ids.append(env.id)
            priorities.append(env.priority)
            ready.append(env.not_before if env.not_before is not None else at)
            bodies.append(encode_envelope(env))
        await self._insert(queues, task_ids, priorities, ready, bodies)

    async def publish_raw(self, queue: str, body: bytes) -> None:
        await self._insert([queue], [guess_task_id(body)], [0], [now()], [body])

    async def _insert(
        self,
        queues: list[str],
        task_ids: list[str],
        priorities: list[int],
        ready: list[float],
        bodies: list[bytes],
    ) -> None:
        distinct = list(dict.fromkeys(queues))
        channel = self.config.channel("jobs")
        payloads = _payloads(distinct)
        args: list[Any] = [queues, task_ids, priorities, ready, bodies]
        args += [channel, payloads]
        sql = self._sql.publish
        if self.config.handoff:
            sql = self._sql.publish_handoff
            args.append(now())

        async def insert(conn: Any) -> None:
            await conn.fetchval(sql, *args)

        await self.db.run(insert)
        self.hub.wake_queues(distinct)

    # ----------------------------------------------------------------- claim

    async def claim(
        self,
        queues: Sequence[str],
        *,
        limit: int,
        lease: float,
        consumer: str,
        wait: float = 0.0,
    ) -> list[Delivery]:
        """Lease up to ``limit`` messages; see :class:`stem.contracts.Broker`.

        Sleeps between attempts until a NOTIFY for one of ``queues``, the
        earliest ``not_before``/lease deadline, or the fallback poll interval,
        whichever comes first. While the server is unreachable it keeps
        trying until ``wait`` (at least ``retry_timeout``) has passed, then
        raises BrokerUnavailable.
        """
        names = list(dict.fromkeys(queues))
        if not names or limit <= 0:
            return []
        handoff = self.config.handoff and wait > 0
        channel = _hand_channel(self.config.schema, consumer) if handoff else None
        if channel is not None and consumer not in self._hands:
            self._hands.add(consumer)
            self.hub.handoffs[channel] = lambda data: self._received(consumer, data)
        try:
            return await self._claim_waiting(
                names, limit, lease, consumer, wait, channel
            )
        except trio.Cancelled:
            if handoff:
                with trio.CancelScope(shield=True), trio.move_on_after(0.5):
                    await self._unregister(names, consumer)
            raise

    async def _claim_waiting(
        self,
        names: list[str],
        limit: int,
        lease: float,
        consumer: str,
        wait: float,
        channel: str | None,
    ) -> list[Delivery]:
        deadline = trio.current_time() + max(wait, 0.0)
        outage_deadline: float | None = None
        delay = 0.02
        while True:
            with self.hub.watch_queues(names) as woken:
                self._handed.watch(consumer, woken)
                try:
                    handed = self._handed.take(consumer, names, limit)
                    if handed:
                        return handed
                    register = None
                    if channel is not None:
                        register = await self._registration(
                            consumer, limit, lease, channel, deadline
                        )
                    try:
                        rows, next_due, at = await self._claim_once(
                            names, limit, lease, consumer, register
                        )
                    except BrokerUnavailable:
                        current = trio.current_time()
                        if outage_deadline is None:
                            outage_deadline = max(
                                deadline, current + self.config.retry_timeout
                            )
                        if current >= outage_deadline:
                            raise
                        await trio.sleep(delay)
                        delay = min(delay * 2, 0.5)
                        continue
                    outage_deadline = None
                    if rows:
                        return self._deliveries(names, rows, lease, at)
                    remaining = deadline - trio.current_time()
                    if remaining <= 0:
                        return []
                    pause = min(remaining, self.config.poll_interval)
                    if next_due is not None:
                        pause = min(pause, max(next_due - now(), 0.0) + 0.001)
                    with trio.move_on_after(pause):
                        await woken.wait()
                finally:
                    self._handed.unwatch(consumer, woken)

    async def _registration(
        self, consumer: str, limit: int, lease: float, channel: str, deadline: float
    ) -> list[Any] | None:
        """The idle registration a claim about to wait makes (the last
        arguments of ``claim_handoff``), or None when its channel is not
        heard."""
        remaining = deadline - trio.current_time()
        if remaining <= 0:
            return None
        if channel not in self.hub.listening:
            await self.hub.listen(channel)
        pid = self.hub.pid
        if pid is None or channel not in self.hub.listening:
            return None
        upto = now() + min(remaining, self.config.poll_interval)
        return [consumer, lease, upto, channel, pid]

    async def _unregister(self, names: list[str], consumer: str) -> None:
        """Drop ``consumer``'s registrations (a cancelled claim): no publish
        hands it more. Best effort: a registration lapses anyway."""
        sql = self._sql.unregister

        async def drop(conn: Any) -> None:
            await conn.execute(sql, consumer, names)

        try:
            await self.db.run_once(drop)
        except Exception:  # the server away, or worse: it lapses
            logger.debug("could not drop the idle registration of %r", consumer)

    def _received(self, consumer: str, payload: str) -> None:
        """A publish handed ``consumer`` a message (already leased to it):
        keep it for its claim. A payload that does not parse is dropped with
        a warning; its message comes back when the lease runs out."""
        try:
            delivery = _handed_delivery(payload)
        except (TypeError, ValueError, KeyError) as exc:  # binascii.Error too
            logger.warning("dropped a handoff that does not parse: %s", exc)
            return
        self._handed.add(consumer, [delivery])

    async def _claim_once(
        self,
        names: list[str],
        limit: int,
        lease: float,
        consumer: str = "",
        register: list[Any] | None = None,
    ) -> tuple[list[Any], float | None, float]:
        at = now()
        token = uuid.uuid4().hex
        claim_sql, due_sql = self._sql.claim, self._sql.next_due
        claim_args: list[Any] = [names, at, limit, at + lease, token]
        if self.config.handoff:
            claim_sql = self._sql.claim_handoff
            claim_args += register or [consumer, 0.0, 0.0, "", 0]

        async def claim(conn: Any) -> tuple[list[Any], float | None]:
            rows = await conn.fetch(claim_sql, *claim_args)
            if rows:
                return [(*row, token) for row in rows], None
            due = await conn.fetchval(due_sql, names, at)
            return [], due

        rows, due = await self.db.run_once(claim)
        return rows, due, at

    def _deliveries(
        self, names: list[str], rows: list[Any], lease: float, at: float
    ) -> list[Delivery]:
        order = {name: index for index, name in enumerate(names)}
        rows.sort(key=lambda r: (order.get(r[3], 0), -r[1], r[2], r[0]))
        out: list[Delivery] = []
        for row in rows:
            ident, _prio, _ready, queue, task_id, count, body = row[:7]
            terminate, reason, expires_at, version, token = row[7:]
            revocation = None
            if version is not None:
                revocation = Revocation(
                    task_id=task_id,
                    terminate=bool(terminate),
                    reason=str(reason),
                    expires_at=expires_at,
                    version=int(version),
                )
            out.append(
                _delivery(
                    f"{ident}:{token}",
                    queue,
                    task_id,
                    count,
                    bytes(body),
                    at + lease,
                    revocation,
                )
            )
        return out

    # ---------------------------------------------------- ack / nack / extend

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        ids, tokens = self._receipts(deliveries)
        sql = self._sql.ack

        async def ack(conn: Any) -> None:
            await conn.execute(sql, ids, tokens)

        await self.db.run(ack)

    async def nack(
        self,
        delivery: Delivery,
        *,
        requeue: bool = True,
        delay: float = 0.0,
        envelope: Envelope | None = None,
    ) -> bool:
        ident, token = _split_receipt(delivery.receipt)
        if not requeue:
            drop = self._sql.drop

            async def dropper(conn: Any) -> bool:
                return await conn.fetchval(drop, ident, token) is not None

            return await self.db.run(dropper)
        ready = _redelivery.requeue_at(now(), delay=delay, envelope=envelope)
        body: bytes | None = None
        priority: int | None = None
        if envelope is not None:
            body = encode_envelope(envelope)
            priority = envelope.priority
        sql = self._sql.requeue
        channel = self.config.channel("jobs")

        async def requeuer(conn: Any) -> str | None:
            queue: str | None = await conn.fetchval(
                sql, ident, token, ready, body, priority, channel
            )
            return queue

        queue = await self.db.run(requeuer)
        if queue is None:
            return False
        self.hub.wake_queues([queue])
        return True

    async def extend(self, deliveries: Sequence[Delivery], lease: float) -> list[bool]:
        if not deliveries:
            return []
        ids, tokens = self._receipts(deliveries)
        sql = self._sql.extend
        until = now() + lease

        async def extend(conn: Any) -> set[tuple[int, str]]:
            rows = await conn.fetch(sql, ids, tokens, until)
            return {(row[0], row[1]) for row in rows}

        held = await self.db.run(extend)
        return [pair in held for pair in zip(ids, tokens, strict=True)]

    def _receipts(self, deliveries: Sequence[Delivery]) -> tuple[list[int], list[str]]:
        ids: list[int] = []
        tokens: list[str] = []
        for delivery in deliveries:
            ident, token = _split_receipt(delivery.receipt)
            ids.append(ident)
            tokens.append(token)
        return ids, tokens

    # ---------------------------------------------------------- dead letters

    async def dead_letter(self, delivery: Delivery, entry: DeadLetter) -> bool:
        ident, token = _split_receipt(delivery.receipt)
        entry = _redelivery.filed(entry, delivery)
        args = (
            ident,
            token,
            entry.queue,
            entry.task_id,
            entry.name,
            entry.reason,
            dumps(entry.error.to_dict()) if entry.error else None,
            entry.attempts,
            entry.dead_at,
            dumps(envelope_to_dict(entry.envelope)) if entry.envelope else None,
            entry.raw,
            dumps(list(entry.history), what="history"),
        )
        sql = self._sql.dead_letter

        async def bury(conn: Any) -> bool:
            return await conn.fetchval(sql, *args) is not None

        return await self.db.run(bury)

    @staticmethod
    def _dead(row: Any) -> DeadLetter:
        seq, task_id, name, queue, reason, error, attempts, dead_at, env, raw, hist = (
            row
        )
        return _redelivery.stored_dead(
            entry_id=seq,
            task_id=task_id,
            name=name,
            queue=queue,
            reason=reason,
            error=error,
            attempts=attempts,
            dead_at=dead_at,
            envelope=env,
            raw=raw,
            history=hist,
        )

    async def list_dead(
        self, queue: str, *, limit: int = 100, offset: int = 0
    ) -> list[DeadLetter]:
        sql = self._sql.list_dead

        async def fetch(conn: Any) -> list[Any]:
            rows: list[Any] = await conn.fetch(sql, queue, limit, offset)
            return rows

        return [self._dead(row) for row in await self.db.run(fetch)]

    async def get_dead(self, queue: str, task_id: str) -> DeadLetter | None:
        sql = self._sql.get_dead

        async def fetch(conn: Any) -> Any:
            return await conn.fetchrow(sql, queue, task_id)

        row = await self.db.run(fetch)
        return self._dead(row) if row is not None else None

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
        at = now()
        ids = list(task_ids) if task_ids is not None else None
        cap = _redelivery.capped(limit)
        pick, delete, publish = (
            self._sql.pick_dead,
            self._sql.delete_dead,
            self._sql.publish,
        )
        channel = self.config.channel("jobs")

        async def replay(conn: Any) -> list[str]:
            async with conn.transaction():
                rows = [
                    _DeadRow(seq, task_id, dead_at, _envelope_or_none(text))
                    for seq, task_id, dead_at, text in await conn.fetch(
                        pick, queue, ids, since, cap
                    )
                ]
                chosen = _redelivery.select_for_replay(
                    rows, task_ids=ids, limit=cap, since=since
                )
                if dry_run or not chosen:
                    return [row.task_id for row in chosen]
                fresh: list[Envelope] = []
                for row in chosen:
                    assert row.envelope is not None
                    fresh.append(
                        _redelivery.fresh_for_replay(
                            row.envelope, queue=queue, at=at, delay=delay
                        )
                    )
                await conn.execute(delete, [row.seq for row in chosen])
                await conn.fetchval(
                    publish,
                    [env.queue for env in fresh],
                    [env.id for env in fresh],
                    [env.priority for env in fresh],
                    [_redelivery.due_at(env, at) for env in fresh],
                    [encode_envelope(env) for env in fresh],
                    channel,
                    _payloads([queue]),
                )
                return [row.task_id for row in chosen]

        chosen = await self.db.run(replay)
        if chosen and not dry_run:
            self.hub.wake_queues([queue])
        return chosen

    async def purge_dead(
        self, queue: str, *, since: float | None = None, limit: int | None = None
    ) -> int:
        sql = self._sql.purge_dead
        cap = _redelivery.capped(limit)

        async def purge(conn: Any) -> int:
            return _count(await conn.execute(sql, queue, since, cap))

        return await self.db.run(purge)

    # ------------------------------------------------------------- the rest

    async def stats(self, queue: str) -> QueueStats:
        sql = self._sql.stats
        at = now()

        async def fetch(conn: Any) -> Any:
            return await conn.fetchrow(sql, queue, at)

        pending, delayed, in_flight, dead = await self.db.run(fetch)
        return QueueStats(
            queue=queue,
            pending=pending,
            delayed=delayed,
            in_flight=in_flight,
            dead=dead,
        )

    async def queues(self) -> list[str]:
        sql = self._sql.queues

        async def fetch(conn: Any) -> list[str]:
            return [row[0] for row in await conn.fetch(sql)]

        return await self.db.run(fetch)

    async def purge(self, queue: str) -> int:
        sql = self._sql.purge
        at = now()

        async def purge(conn: Any) -> int:
            return _count(await conn.execute(sql, queue, at))

        return await self.db.run(purge)

    async def remove(self, queue: str, task_ids: Sequence[str]) -> int:
        """Delete the unlocked (waiting) jobs of ``task_ids`` in ``queue``."""
        ids = sorted(set(task_ids))
        if not ids:
            return 0
        sql = self._sql.remove
        at = now()

        async def remove(conn: Any) -> int:
            return _count(await conn.execute(sql, queue, ids, at))

        return await self.db.run(remove)

    async def broadcast(self, message: Mapping[str, Any]) -> None:
        payload = dumps(dict(message), what="broadcast message")
        if len(payload.encode()) > _NOTIFY_LIMIT:
            raise ValueError(
                f"broadcast message too large for NOTIFY ({len(payload)} bytes; "
                f"at most {_NOTIFY_LIMIT})"
            )
        channel = self.config.channel("control")
        sql = self._sql.notify

        async def send(conn: Any) -> None:
            await conn.execute(sql, channel, payload)

        await self.db.run(send)

    def subscribe(
        self,
    ) -> AbstractAsyncContextManager[trio.abc.ReceiveChannel[dict[str, Any]]]:
        @asynccontextmanager
        async def subscribed() -> Any:
            with self.hub.subscription() as recv:
                yield recv

        return subscribed()
