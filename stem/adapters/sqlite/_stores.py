"""The small stores: locks, revocations, worker heartbeats, token buckets.

Each call is one transaction; deadlines are Stem-clock epoch seconds passed as
parameters (``Capabilities.server_clock`` is False).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import attrs

from stem import _clock
from stem._codec import dumps, readable, worker_info_from
from stem.contracts import Revocation, WorkerInfo

from ._db import Database

_LIVE = "(expires_at IS NULL OR expires_at > ?)"


@attrs.define(eq=False)
class SQLiteLocks:
    """:class:`stem.contracts.LockStore`: one row per held lock."""

    db: Database

    async def acquire(self, name: str, owner: str, *, ttl: float) -> bool:
        """Take the lock if it is free, expired, or already ``owner``'s (which
        renews it)."""
        now = _clock.now()

        def run(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT owner FROM locks WHERE name = ? AND expires_at > ?", (name, now)
            ).fetchone()
            if row is not None and row[0] != owner:
                return False
            conn.execute(
                "INSERT OR REPLACE INTO locks (name, owner, expires_at) "
                "VALUES (?, ?, ?)",
                (name, owner, now + ttl),
            )
            return True

        return await self.db.write(run)

    async def renew(self, name: str, owner: str, *, ttl: float) -> bool:
        now = _clock.now()
        changed: int = await self.db.write(
            lambda conn: (
                conn.execute(
                    "UPDATE locks SET expires_at = ? "
                    "WHERE name = ? AND owner = ? AND expires_at > ?",
                    (now + ttl, name, owner, now),
                ).rowcount
            )
        )
        return changed > 0

    async def release(self, name: str, owner: str) -> bool:
        now = _clock.now()

        def run(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "DELETE FROM locks WHERE name = ? AND owner = ? RETURNING expires_at",
                (name, owner),
            ).fetchone()
            return row is not None and row[0] > now

        return await self.db.write(run)

    async def owner(self, name: str) -> str | None:
        now = _clock.now()
        row = await self.db.read(
            lambda conn: conn.execute(
                "SELECT owner FROM locks WHERE name = ? AND expires_at > ?", (name, now)
            ).fetchone()
        )
        return None if row is None else str(row[0])


def _revocation(row: Sequence[Any]) -> Revocation:
    task_id, terminate, reason, expires_at, version = row
    return Revocation(
        task_id=task_id,
        terminate=bool(terminate),
        reason=reason,
        expires_at=expires_at,
        version=int(version),
    )


_REVOCATION_COLUMNS = "task_id, terminate, reason, expires_at, version"


def live_revocations(
    conn: sqlite3.Connection, task_ids: Sequence[str], now: float
) -> dict[str, Revocation]:
    """The live revocations among ``task_ids`` (inside a transaction)."""
    unique = sorted(set(task_ids))
    rows: list[Any] = []
    for start in range(0, len(unique), 500):
        part = unique[start : start + 500]
        marks = ",".join("?" * len(part))
        rows.extend(
            conn.execute(
                f"SELECT {_REVOCATION_COLUMNS} FROM revocations "
                f"WHERE task_id IN ({marks}) AND {_LIVE}",
                (*part, now),
            )
        )
    return {row[0]: _revocation(row) for row in rows}


@attrs.define(eq=False)
class SQLiteRevocations:
    """:class:`stem.contracts.RevocationStore`; versions come from a counter
    row bumped inside the upsert's transaction, so they only grow."""

    db: Database

    async def revoke(self, revocation: Revocation) -> int:
        def run(conn: sqlite3.Connection) -> int:
            (version,) = conn.execute(
                "INSERT INTO counters (name, value) VALUES ('revocations', 1) "
                "ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value"
            ).fetchone()
            conn.execute(
                f"INSERT OR REPLACE INTO revocations ({_REVOCATION_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    revocation.task_id,
                    int(revocation.terminate),
                    revocation.reason,
                    revocation.expires_at,
                    version,
                ),
            )
            return int(version)

        return await self.db.write(run)

    async def is_revoked(self, task_ids: Sequence[str]) -> dict[str, Revocation]:
        if not task_ids:
            return {}
        now = _clock.now()
        return await self.db.read(lambda conn: live_revocations(conn, task_ids, now))

    async def changes_since(self, version: int) -> tuple[list[Revocation], int]:
        now = _clock.now()

        def run(conn: sqlite3.Connection) -> tuple[list[Any], int]:
            rows = conn.execute(
                f"SELECT {_REVOCATION_COLUMNS} FROM revocations "
                f"WHERE version > ? AND {_LIVE} ORDER BY version",
                (version, now),
            ).fetchall()
            latest = conn.execute(
                "SELECT value FROM counters WHERE name = 'revocations'"
            ).fetchone()
            return rows, int(latest[0]) if latest else 0

        rows, latest = await self.db.read(run)
        return [_revocation(row) for row in rows], latest


def _worker_to_json(info: WorkerInfo) -> str:
    data = attrs.asdict(info, recurse=False)
    data["queues"] = list(info.queues)
    data["meta"] = dict(info.meta)
    return dumps(data, what="worker info")


@attrs.define(eq=False)
class SQLiteHeartbeats:
    """:class:`stem.contracts.HeartbeatStore`: one row per worker."""

    db: Database

    async def beat(self, info: WorkerInfo, *, ttl: float) -> None:
        expires = _clock.now() + ttl
        body = _worker_to_json(info)
        await self.db.write(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO workers (worker_id, expires_at, body) "
                "VALUES (?, ?, ?)",
                (info.worker_id, expires, body),
            )
        )

    async def workers(self) -> list[WorkerInfo]:
        now = _clock.now()
        rows = await self.db.read(
            lambda conn: conn.execute(
                "SELECT body FROM workers WHERE expires_at > ? ORDER BY worker_id",
                (now,),
            ).fetchall()
        )
        return readable(worker_info_from, [row[0] for row in rows], "heartbeat")

    async def forget(self, worker_id: str) -> None:
        await self.db.write(
            lambda conn: conn.execute(
                "DELETE FROM workers WHERE worker_id = ?", (worker_id,)
            )
        )


@attrs.define(eq=False)
class SQLiteRateLimits:
    """:class:`stem.contracts.RateLimitStore`: token buckets refilled from the
    elapsed Stem-clock time at each take (a new bucket starts full)."""

    db: Database

    async def take(self, key: str, *, rate: float, burst: int) -> float:
        now = _clock.now()

        def run(conn: sqlite3.Connection) -> float:
            row = conn.execute(
                "SELECT tokens, updated_at FROM buckets WHERE key = ?", (key,)
            ).fetchone()
            if row is None:
                tokens = float(burst)
            else:
                elapsed = max(now - row[1], 0.0)
                tokens = min(float(burst), row[0] + elapsed * rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / rate
            conn.execute(
                "INSERT OR REPLACE INTO buckets (key, tokens, updated_at) "
                "VALUES (?, ?, ?)",
                (key, tokens, now),
            )
            return wait

        return await self.db.write(run)


async def reap(db: Database) -> None:
    """Delete rows whose time to live has passed (reads already ignore them)."""
    now = _clock.now()

    def run(conn: sqlite3.Connection) -> None:
        for table in ("results", "group_members", "claims", "uniques", "revocations"):
            conn.execute(
                f"DELETE FROM {table} WHERE expires_at IS NOT NULL AND expires_at <= ?",
                (now,),
            )
        for table in ("locks", "workers", "event_listeners"):
            conn.execute(f"DELETE FROM {table} WHERE expires_at <= ?", (now,))
        # Members of expired groups; the group records stay until their
        # forget time, so late members are still refused (stem._groupstate).
        conn.execute(
            "DELETE FROM group_members WHERE group_id IN (SELECT group_id FROM "
            "groups WHERE expires_at IS NOT NULL AND expires_at <= ?)",
            (now,),
        )
        conn.execute(
            "DELETE FROM groups WHERE forget_at IS NOT NULL AND forget_at <= ?",
            (now,),
        )

    await db.write(run)
