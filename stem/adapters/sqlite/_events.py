"""The event log on SQLite: a table pruned to its capacity on every append.

Readers in this process are woken by the append; readers in other processes
poll ``PRAGMA data_version`` (a cheap read) every ``poll_interval`` seconds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import attrs
import trio

from stem import _clock
from stem.contracts import StoredEvent

from ._db import Database, Signal

#: Records kept by default.
DEFAULT_CAPACITY = 10_000


@attrs.define(eq=False)
class SQLiteEvents:
    """:class:`stem.contracts.EventStore` in the ``events`` table."""

    db: Database
    poll_interval: float
    capacity: int = DEFAULT_CAPACITY
    _signal: Signal = attrs.field(factory=Signal, init=False)

    async def append(self, bodies: Sequence[bytes]) -> int:
        rows = [(bytes(b),) for b in bodies]
        capacity = self.capacity

        def run(conn: sqlite3.Connection) -> int:
            if rows:
                conn.executemany("INSERT INTO events (body) VALUES (?)", rows)
            (last,) = conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()
            if rows:
                # Keep the newest ``capacity`` (the id is the primary key).
                conn.execute("DELETE FROM events WHERE id <= ?", (last - capacity,))
            if last == 0:
                return _sequence(conn)
            return int(last)

        last = await self.db.write(run)
        if rows:
            self._signal.fire()
        return last

    async def read(
        self, after: int, *, limit: int = 100, wait: float = 0.0
    ) -> list[StoredEvent]:
        deadline = trio.current_time() + max(wait, 0.0)
        seen: int | None = None

        def fetch(conn: sqlite3.Connection) -> list[StoredEvent]:
            return [
                StoredEvent(cursor=int(row[0]), body=bytes(row[1]))
                for row in conn.execute(
                    "SELECT id, body FROM events WHERE id > ? ORDER BY id LIMIT ?",
                    (after, max(limit, 0)),
                )
            ]

        while True:
            snapshot = self._signal.snapshot()
            seen, found = await self.db.read_if_changed(seen, fetch)
            if found:
                return found
            left = deadline - trio.current_time()
            if left <= 0:
                return []
            await Signal.wait(snapshot, min(left, self.poll_interval))
            if snapshot.is_set():
                seen = None  # this process appended (data_version counts others)

    async def last_cursor(self) -> int:
        return await self.db.read(_newest)

    async def listen(self, listener: str, *, ttl: float) -> None:
        until = _clock.now() + ttl
        await self.db.write(
            lambda conn: conn.execute(
                "INSERT INTO event_listeners (name, expires_at) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET expires_at = excluded.expires_at",
                (listener, until),
            )
        )

    async def unlisten(self, listener: str) -> None:
        await self.db.write(
            lambda conn: conn.execute(
                "DELETE FROM event_listeners WHERE name = ?", (listener,)
            )
        )

    async def listeners(self) -> int:
        at = _clock.now()
        return await self.db.read(
            lambda conn: int(
                conn.execute(
                    "SELECT COUNT(*) FROM event_listeners WHERE expires_at > ?", (at,)
                ).fetchone()[0]
            )
        )


def _sequence(conn: sqlite3.Connection) -> int:
    row = conn.execute(
        "SELECT seq FROM sqlite_sequence WHERE name = 'events'"
    ).fetchone()
    return int(row[0]) if row else 0


def _newest(conn: sqlite3.Connection) -> int:
    (last,) = conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()
    return int(last) or _sequence(conn)
