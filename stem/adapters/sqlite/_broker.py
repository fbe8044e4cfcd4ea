"""The broker: queues, leases, delays, priorities, dead letters, broadcast.

A message is one row of ``messages``. ``visible_at`` is when a ready or
delayed message may be claimed, and for a leased one its lease deadline, so
"claimable" is always ``visible_at <= now`` and an expired lease needs no
reaper. The claim query is a range scan of the index
``(queue, priority, visible_at)``, one seek per priority, highest first.
A receipt is ``"<row id>:<token>"``; every claim draws a fresh token, so a
stale receipt matches no row and changes nothing.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, NamedTuple

import attrs
import trio

from stem import _clock, _redelivery
from stem._codec import (
    decode_envelope,
    decode_object,
    dumps,
    envelope_from_dict,
    envelope_to_dict,
    guess_task_id,
    loads,
    undecodable,
)
from stem._envelope import Envelope
from stem._errors import DecodeError
from stem.contracts import DeadLetter, Delivery, QueueStats

from ._db import Database, Signal
from ._stores import live_revocations

logger = logging.getLogger("stem.sqlite")

_PRIORITIES = tuple(range(9, -1, -1))
_SELECT_READY = (
    "SELECT id, task_id, delivery_count, body FROM messages "
    "WHERE queue = ? AND priority = ? AND visible_at <= ? "
    "ORDER BY visible_at, id LIMIT ?"
)
_SELECT_NEXT = "SELECT MIN(visible_at) FROM messages WHERE queue = ? AND priority = ?"
_INSERT = (
    "INSERT INTO messages (queue, task_id, priority, visible_at, body) "
    "VALUES (?, ?, ?, ?, ?)"
)
_SUBSCRIBER_BUFFER = 256
#: A row of ``messages``: queue, task id, priority, visible at, body.
_Row = tuple[str, str, int, float, str | bytes]


def _encode(env: Envelope) -> str:
    """The envelope as JSON text: stored as TEXT it reads back as ``str``,
    which ``json.loads`` parses without sniffing an encoding. Foreign bodies
    (``publish_raw``) stay BLOBs and read back as ``bytes``."""
    return dumps(envelope_to_dict(env), what="envelope")


def _priority(value: int) -> int:
    return min(max(int(value), 0), 9)


def _parse_receipt(receipt: str) -> tuple[int, str]:
    row, _, token = receipt.partition(":")
    try:
        return int(row), token
    except ValueError:
        return -1, token


def _delivery(
    row: tuple[int, object, object, object],
    queue: str,
    token: str,
    lease_until: float,
) -> Delivery:
    """The delivery of one claimed row, whatever its columns hold (a foreign
    writer may have stored a body as REAL, a task id as INTEGER): a body that
    does not decode makes an undecodable delivery, never an error."""
    row_id, task_id, count, body = row
    claims = (count if type(count) is int and count > 0 else 0) + 1
    size = len(body.encode()) if isinstance(body, str) else _blob_size(body)
    try:
        envelope = decode_envelope(body)
    except DecodeError as exc:
        raw, reason, guessed = undecodable(body, exc)
        return Delivery(
            receipt=f"{row_id}:{token}",
            queue=queue,
            task_id=task_id if isinstance(task_id, str) else guessed,
            envelope=None,
            lease_until=lease_until,
            delivery_count=claims,
            raw=raw,
            decode_error=reason,
            size=size,
        )
    return Delivery(
        receipt=f"{row_id}:{token}",
        queue=queue,
        task_id=task_id if isinstance(task_id, str) else envelope.id,
        envelope=envelope,
        lease_until=lease_until,
        delivery_count=claims,
        size=size,
    )


def _blob_size(body: object) -> int:
    return len(body) if isinstance(body, bytes | bytearray | memoryview) else 0


def _broadcast(body: object) -> dict[str, Any] | None:
    """A stored broadcast, or None (logged) when it does not decode."""
    try:
        return decode_object(body, what="broadcast")
    except DecodeError as exc:
        logger.warning("dropped a broadcast that does not decode: %s", exc)
        return None


def _broadcasts_after(conn: sqlite3.Connection, *, after: int) -> list[Any]:
    return conn.execute(
        "SELECT id, body FROM broadcasts WHERE id > ? ORDER BY id", (after,)
    ).fetchall()


class _DeadRow(NamedTuple):
    """A dead letter as the replay and purge selections read it."""

    seq: int
    task_id: str
    dead_at: float
    envelope: Envelope | None  # None: none stored, or it no longer decodes


def _envelope_or_none(text: object) -> Envelope | None:
    if text is None:
        return None
    try:
        return envelope_from_dict(loads(text))  # type: ignore[arg-type]
    except DecodeError:
        return None


@attrs.define(eq=False)
class _Subscriber:
    send: trio.MemorySendChannel[dict[str, Any]]
    after: int
    dropped: int = 0


@attrs.define(eq=False)
class SQLiteBroker:
    """:class:`stem.contracts.Broker` on one SQLite file."""

    db: Database
    poll_interval: float
    broadcast_retention: float = 60.0
    _signal: Signal = attrs.field(factory=Signal, init=False)
    _subscribers: set[_Subscriber] = attrs.field(factory=set, init=False)
    _poke: Signal = attrs.field(factory=Signal, init=False)

    # ------------------------------------------------------------ publishing

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        if not envelopes:
            return
        rows = self.rows(envelopes, now=_clock.now())
        await self.db.write(lambda conn: self.insert_rows(conn, rows))
        self.published()

    @staticmethod
    def rows(envelopes: Sequence[Envelope], *, now: float) -> list[_Row]:
        """``envelopes`` as rows of ``messages`` (encoded out of the thread)."""
        return [
            (
                env.queue,
                env.id,
                _priority(env.priority),
                env.not_before if env.not_before is not None else now,
                _encode(env),
            )
            for env in envelopes
        ]

    @classmethod
    def insert_rows(cls, conn: sqlite3.Connection, rows: Sequence[_Row]) -> None:
        """Insert message rows (inside a write transaction)."""
        cls._insert(conn, rows, sorted({row[0] for row in rows}))

    def woken(self, kinds: frozenset[int]) -> None:
        """Another process committed ``kinds`` (see ``_wake.KINDS``)."""
        if ord("q") in kinds:
            self._signal.fire()
        if ord("b") in kinds:
            self._poke.fire()

    def published(self) -> None:
        """Wake waiting claims, here and in the other processes on this file
        (after a committed publish)."""
        self._signal.fire()
        self.db.notify(b"q")

    async def publish_raw(self, queue: str, body: bytes) -> None:
        rows = [(queue, guess_task_id(body), 0, _clock.now(), bytes(body))]
        await self.db.write(lambda conn: self._insert(conn, rows, [queue]))
        self.published()

    @staticmethod
    def _insert(
        conn: sqlite3.Connection, rows: Sequence[_Row], queues: Sequence[str]
    ) -> None:
        conn.executemany(
            "INSERT OR IGNORE INTO queues (name) VALUES (?)", [(q,) for q in queues]
        )
        conn.executemany(_INSERT, rows)

    # ------------------------------------------------------------ claiming

    async def claim(
        self,
        queues: Sequence[str],
        *,
        limit: int,
        lease: float,
        consumer: str,
        wait: float = 0.0,
    ) -> list[Delivery]:
        """Lease up to ``limit`` messages. While waiting, an in-process publish
        wakes the claim at once; another process's publish is seen by a poll
        every ``poll_interval`` (a cheap ``PRAGMA data_version`` read); a
        delayed message or an expiring lease wakes it when due."""
        if limit <= 0 or not queues:
            return []
        queues = list(queues)
        deadline = trio.current_time() + max(wait, 0.0)
        seen: int | None = None
        next_due: float | None = None
        while True:
            snapshot = self._signal.snapshot()
            now = _clock.now()
            if next_due is not None and now >= next_due:
                seen = None
            seen, outcome = await self.db.write_if_changed(
                seen,
                partial(
                    self._claim,
                    queues=queues,
                    limit=limit,
                    lease=lease,
                    consumer=consumer,
                    now=now,
                    want_next=wait > 0,
                ),
            )
            if outcome is not None:
                got, next_due = outcome
                if got:
                    return got
            remaining = deadline - trio.current_time()
            if remaining <= 0:
                return []
            timeout = min(remaining, self.poll_interval)
            if next_due is not None:
                timeout = min(timeout, max(next_due - now, 0.0))
            await Signal.wait(snapshot, timeout)
            if snapshot.is_set():
                seen = None

    @staticmethod
    def _claim(
        conn: sqlite3.Connection,
        *,
        queues: Sequence[str],
        limit: int,
        lease: float,
        consumer: str,
        now: float,
        want_next: bool,
    ) -> tuple[list[Delivery], float | None]:
        token = secrets.token_hex(8)
        lease_until = now + lease
        picked: list[tuple[str, tuple[int, object, object, object]]] = []
        for queue in queues:
            for priority in _PRIORITIES:
                need = limit - len(picked)
                if need <= 0:
                    break
                for row in conn.execute(_SELECT_READY, (queue, priority, now, need)):
                    picked.append((queue, row))
        if not picked:
            if not want_next:
                return [], None
            dues = [
                due
                for queue in queues
                for priority in _PRIORITIES
                for (due,) in conn.execute(_SELECT_NEXT, (queue, priority))
                if due is not None
            ]
            return [], min(dues, default=None)
        conn.executemany(
            "UPDATE messages SET token = ?, visible_at = ?, consumer = ?, "
            "delivery_count = delivery_count + 1 WHERE id = ?",
            [(token, lease_until, consumer, row[0]) for _, row in picked],
        )
        deliveries = [
            _delivery(row, queue, token, lease_until) for queue, row in picked
        ]
        # The same transaction reads their revocations: the worker then needs
        # no lookup of its own (Delivery.revocation_checked).
        found = live_revocations(
            conn, [d.envelope.id for d in deliveries if d.envelope is not None], now
        )
        return [
            attrs.evolve(d, revocation_checked=True, revocation=found.get(d.task_id))
            if d.envelope is not None and d.task_id == d.envelope.id
            else d
            for d in deliveries
        ], None

    # ------------------------------------------------------------ settling

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        keys = [_parse_receipt(d.receipt) for d in deliveries]
        await self.db.write(
            lambda conn: conn.executemany(
                "DELETE FROM messages WHERE id = ? AND token = ?", keys
            )
        )

    async def nack(
        self,
        delivery: Delivery,
        *,
        requeue: bool = True,
        delay: float = 0.0,
        envelope: Envelope | None = None,
    ) -> bool:
        row_id, token = _parse_receipt(delivery.receipt)
        if not requeue:
            sql = "DELETE FROM messages WHERE id = ? AND token = ?"
            params: tuple[Any, ...] = (row_id, token)
        else:
            visible = _redelivery.requeue_at(
                _clock.now(), delay=delay, envelope=envelope
            )
            if envelope is None:
                sql = (
                    "UPDATE messages SET token = NULL, consumer = NULL, "
                    "visible_at = ? WHERE id = ? AND token = ?"
                )
                params = (visible, row_id, token)
            else:
                sql = (
                    "UPDATE messages SET token = NULL, consumer = NULL, "
                    "visible_at = ?, task_id = ?, priority = ?, body = ? "
                    "WHERE id = ? AND token = ?"
                )
                params = (
                    visible,
                    envelope.id,
                    _priority(envelope.priority),
                    _encode(envelope),
                    row_id,
                    token,
                )
        changed: int = await self.db.write(
            lambda conn: conn.execute(sql, params).rowcount
        )
        if changed and requeue:
            self.published()
        return changed > 0

    async def extend(self, deliveries: Sequence[Delivery], lease: float) -> list[bool]:
        if not deliveries:
            return []
        until = _clock.now() + lease
        keys = [_parse_receipt(d.receipt) for d in deliveries]

        def run(conn: sqlite3.Connection) -> list[bool]:
            sql = "UPDATE messages SET visible_at = ? WHERE id = ? AND token = ?"
            return [conn.execute(sql, (until, *key)).rowcount > 0 for key in keys]

        return await self.db.write(run)

    # ------------------------------------------------------------ dead letters

    async def dead_letter(self, delivery: Delivery, entry: DeadLetter) -> bool:
        row_id, token = _parse_receipt(delivery.receipt)
        entry = _redelivery.filed(entry, delivery)
        error = dumps(entry.error.to_dict()) if entry.error else None
        env = dumps(envelope_to_dict(entry.envelope)) if entry.envelope else None
        history = dumps(list(entry.history), what="history")
        params = (
            entry.queue,
            entry.task_id,
            entry.name,
            entry.reason,
            error,
            entry.attempts,
            entry.dead_at,
            env,
            entry.raw,
            history,
        )

        def run(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "DELETE FROM messages WHERE id = ? AND token = ? RETURNING id",
                (row_id, token),
            ).fetchone()
            if row is None:
                return False
            conn.execute(
                "INSERT INTO dead_letters (queue, task_id, name, reason, "
                "error, attempts, dead_at, envelope, raw, history) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                params,
            )
            return True

        return await self.db.write(run)

    _DEAD_COLUMNS = (
        "seq, task_id, name, queue, reason, error, attempts, dead_at, envelope, "
        "raw, history"
    )

    @staticmethod
    def _dead(row: Sequence[Any]) -> DeadLetter:
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
        rows = await self.db.read(
            lambda conn: conn.execute(
                f"SELECT {self._DEAD_COLUMNS} FROM dead_letters WHERE queue = ? "
                "ORDER BY dead_at, seq LIMIT ? OFFSET ?",
                (queue, limit, offset),
            ).fetchall()
        )
        return [self._dead(row) for row in rows]

    async def get_dead(self, queue: str, task_id: str) -> DeadLetter | None:
        row = await self.db.read(
            lambda conn: conn.execute(
                f"SELECT {self._DEAD_COLUMNS} FROM dead_letters "
                "WHERE queue = ? AND task_id = ? ORDER BY dead_at DESC, seq DESC "
                "LIMIT 1",
                (queue, task_id),
            ).fetchone()
        )
        return None if row is None else self._dead(row)

    @staticmethod
    def _dead_rows(conn: sqlite3.Connection, queue: str) -> list[_DeadRow]:
        """The queue's dead letters, oldest first, for the selections of
        :mod:`stem._redelivery`."""
        rows = conn.execute(
            "SELECT seq, task_id, dead_at, envelope FROM dead_letters "
            "WHERE queue = ? ORDER BY dead_at, seq",
            (queue,),
        ).fetchall()
        return [
            _DeadRow(seq, task_id, dead_at, _envelope_or_none(text))
            for seq, task_id, dead_at, text in rows
        ]

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
        now = _clock.now()

        def run(conn: sqlite3.Connection) -> list[str]:
            rows = _redelivery.select_for_replay(
                self._dead_rows(conn, queue),
                task_ids=task_ids,
                limit=limit,
                since=since,
            )
            if dry_run or not rows:
                return [row.task_id for row in rows]
            fresh: list[tuple[str, str, int, float, str | bytes]] = []
            for row in rows:
                assert row.envelope is not None
                env = _redelivery.fresh_for_replay(
                    row.envelope,
                    queue=queue,
                    at=now,
                    delay=delay,
                )
                fresh.append(
                    (
                        queue,
                        row.task_id,
                        _priority(env.priority),
                        _redelivery.due_at(env, now),
                        _encode(env),
                    )
                )
            conn.executemany(
                "DELETE FROM dead_letters WHERE seq = ?", [(row.seq,) for row in rows]
            )
            self._insert(conn, fresh, [queue])
            return [row.task_id for row in rows]

        chosen = await (self.db.read(run) if dry_run else self.db.write(run))
        if chosen and not dry_run:
            self.published()
        return chosen

    async def purge_dead(
        self, queue: str, *, since: float | None = None, limit: int | None = None
    ) -> int:
        def run(conn: sqlite3.Connection) -> int:
            rows = _redelivery.select_for_purge(
                self._dead_rows(conn, queue), limit=limit, since=since
            )
            conn.executemany(
                "DELETE FROM dead_letters WHERE seq = ?", [(row.seq,) for row in rows]
            )
            return len(rows)

        return await self.db.write(run)

    # ------------------------------------------------------------ inspection

    async def stats(self, queue: str) -> QueueStats:
        now = _clock.now()

        def run(conn: sqlite3.Connection) -> QueueStats:
            pending, delayed, in_flight = conn.execute(
                "SELECT TOTAL(visible_at <= ?), "
                "TOTAL(token IS NULL AND visible_at > ?), "
                "TOTAL(token IS NOT NULL AND visible_at > ?) "
                "FROM messages WHERE queue = ?",
                (now, now, now, queue),
            ).fetchone()
            (dead,) = conn.execute(
                "SELECT COUNT(*) FROM dead_letters WHERE queue = ?", (queue,)
            ).fetchone()
            return QueueStats(
                queue=queue,
                pending=int(pending),
                delayed=int(delayed),
                in_flight=int(in_flight),
                dead=int(dead),
            )

        return await self.db.read(run)

    async def queues(self) -> list[str]:
        rows = await self.db.read(
            lambda conn: conn.execute(
                "SELECT name FROM queues ORDER BY name"
            ).fetchall()
        )
        return [row[0] for row in rows]

    async def purge(self, queue: str) -> int:
        now = _clock.now()
        count: int = await self.db.write(
            lambda conn: (
                conn.execute(
                    "DELETE FROM messages WHERE queue = ? "
                    "AND (token IS NULL OR visible_at <= ?)",
                    (queue, now),
                ).rowcount
            )
        )
        return count

    async def remove(self, queue: str, task_ids: Sequence[str]) -> int:
        """Delete the waiting (never leased, or lease expired) messages of
        ``task_ids`` from ``queue``."""
        ids = sorted(set(task_ids))
        if not ids:
            return 0
        now = _clock.now()

        def run(conn: sqlite3.Connection) -> int:
            count = 0
            for start in range(0, len(ids), 500):
                part = ids[start : start + 500]
                marks = ",".join("?" * len(part))
                count += conn.execute(
                    f"DELETE FROM messages WHERE queue = ? AND task_id IN ({marks}) "
                    "AND (token IS NULL OR visible_at <= ?)",
                    (queue, *part, now),
                ).rowcount
            return count

        removed: int = await self.db.write(run)
        return removed

    # ------------------------------------------------------------ broadcast

    async def broadcast(self, message: Mapping[str, Any]) -> None:
        body = dumps(dict(message), what="broadcast message")
        now = _clock.now()
        cutoff = now - self.broadcast_retention

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM broadcasts WHERE created_at < ?", (cutoff,))
            conn.execute(
                "INSERT INTO broadcasts (created_at, body) VALUES (?, ?)", (now, body)
            )

        await self.db.write(run)
        self._poke.fire()
        self.db.notify(b"b")

    @asynccontextmanager
    async def subscribe(
        self,
    ) -> AsyncIterator[trio.abc.ReceiveChannel[dict[str, Any]]]:
        """Every broadcast committed after this returns, in order. A local
        broadcast arrives at once; another process's within ``poll_interval``.
        A subscriber that falls 256 messages behind loses the excess."""
        (last,) = await self.db.read(
            lambda conn: conn.execute(
                "SELECT COALESCE(MAX(id), 0) FROM broadcasts"
            ).fetchone()
        )
        send, receive = trio.open_memory_channel[dict[str, Any]](_SUBSCRIBER_BUFFER)
        subscriber = _Subscriber(send=send, after=int(last))
        self._subscribers.add(subscriber)
        self._poke.fire()
        try:
            async with receive:
                yield receive
        finally:
            self._subscribers.discard(subscriber)
            send.close()

    async def run_broadcast_poller(self) -> None:
        """Fan broadcasts out to this process's subscribers (runs in the
        backend's nursery until it closes)."""
        seen: int | None = None
        while True:
            snapshot = self._poke.snapshot()
            if not self._subscribers:
                await snapshot.wait()
                seen = None
                continue
            after = min(sub.after for sub in self._subscribers)
            seen, rows = await self.db.read_if_changed(
                seen,
                partial(_broadcasts_after, after=after),
            )
            for row_id, body in rows or ():
                message = _broadcast(body)
                for sub in list(self._subscribers):
                    if row_id > sub.after:
                        sub.after = row_id
                        if message is None:
                            continue
                        try:
                            sub.send.send_nowait(dict(message))
                        except trio.WouldBlock:
                            sub.dropped += 1
                        except (trio.BrokenResourceError, trio.ClosedResourceError):
                            # The subscriber stopped reading (its receive side
                            # closes before its send side): drop it, not us.
                            self._subscribers.discard(sub)
            await Signal.wait(snapshot, self.poll_interval)
            if snapshot.is_set():
                seen = None
