"""The event log on Postgres: a table pruned to its capacity on every append.

Appends serialize on a transaction-scoped advisory lock, so cursors (a
``bigserial``) become visible in increasing order and a reader that has seen
cursor N never misses a later append with a smaller one. Readers in other
processes poll (one indexed read every ``poll_interval`` seconds while they
wait); readers in this process are woken by the append.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import trio

from stem._clock import now
from stem.contracts import StoredEvent

from ._config import PostgresConfig
from ._db import Db

#: Records kept by default.
DEFAULT_CAPACITY = 10_000
#: How often a waiting reader looks again (seconds).
POLL_INTERVAL = 0.1


@attrs.define(eq=False)
class PostgresEvents:
    """:class:`stem.contracts.EventStore` in the schema's ``events`` table."""

    config: PostgresConfig
    db: Db
    capacity: int = DEFAULT_CAPACITY
    poll_interval: float = POLL_INTERVAL
    _appended: trio.Event = attrs.field(factory=trio.Event, init=False)

    @property
    def s(self) -> str:
        return self.config.quoted_schema

    async def append(self, bodies: Sequence[bytes]) -> int:
        rows = [bytes(b) for b in bodies]
        lock = f"stem.events.{self.config.schema}"
        insert = f"INSERT INTO {self.s}.events (body) SELECT unnest($1::bytea[])"
        newest = f"SELECT COALESCE(MAX(id), 0) FROM {self.s}.events"
        prune = f"DELETE FROM {self.s}.events WHERE id <= $1"

        async def run(conn: Any) -> int:
            async with conn.transaction():
                if not rows:
                    return int(await conn.fetchval(newest))
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", lock)
                await conn.execute(insert, rows)
                last = int(await conn.fetchval(newest))
                await conn.execute(prune, last - self.capacity)
                return last

        last = await self.db.run(run)
        if rows:
            self._appended.set()
            self._appended = trio.Event()
        return last

    async def read(
        self, after: int, *, limit: int = 100, wait: float = 0.0
    ) -> list[StoredEvent]:
        deadline = trio.current_time() + max(wait, 0.0)
        sql = f"SELECT id, body FROM {self.s}.events WHERE id > $1 ORDER BY id LIMIT $2"

        async def fetch(conn: Any) -> list[Any]:
            rows: list[Any] = await conn.fetch(sql, after, max(limit, 0))
            return rows

        while True:
            appended = self._appended
            rows = await self.db.run(fetch)
            if rows:
                return [StoredEvent(cursor=int(r[0]), body=bytes(r[1])) for r in rows]
            left = deadline - trio.current_time()
            if left <= 0:
                return []
            with trio.move_on_after(min(left, self.poll_interval)):
                await appended.wait()

    async def last_cursor(self) -> int:
        async def fetch(conn: Any) -> int:
            return int(
                await conn.fetchval(f"SELECT COALESCE(MAX(id), 0) FROM {self.s}.events")
            )

        return await self.db.run(fetch)

    async def listen(self, listener: str, *, ttl: float) -> None:
        sql = f"""
            INSERT INTO {self.s}.event_listeners (name, expires_at) VALUES ($1, $2)
            ON CONFLICT (name) DO UPDATE SET expires_at = excluded.expires_at"""
        until = now() + ttl

        async def run(conn: Any) -> None:
            await conn.execute(sql, listener, until)

        await self.db.run(run)

    async def unlisten(self, listener: str) -> None:
        async def run(conn: Any) -> None:
            await conn.execute(
                f"DELETE FROM {self.s}.event_listeners WHERE name = $1", listener
            )

        await self.db.run(run)

    async def listeners(self) -> int:
        at = now()

        async def fetch(conn: Any) -> int:
            return int(
                await conn.fetchval(
                    f"SELECT COUNT(*) FROM {self.s}.event_listeners "
                    "WHERE expires_at > $1",
                    at,
                )
            )

        return await self.db.run(fetch)
