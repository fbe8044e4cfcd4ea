"""Locks, revocations, heartbeats, the global rate-limit bucket, the reaper."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from stem._clock import now
from stem._codec import dumps, readable, worker_info_from
from stem.contracts import Revocation, WorkerInfo

from ._config import PostgresConfig
from ._db import Db

# Tolerance for float rounding of epoch-second differences in token buckets.
_EPSILON = 1e-6


@attrs.define(eq=False)
class _Store:
    config: PostgresConfig
    db: Db

    @property
    def s(self) -> str:
        return self.config.quoted_schema

    async def _val(self, sql: str, *args: Any) -> Any:
        async def fetch(conn: Any) -> Any:
            return await conn.fetchval(sql, *args)

        return await self.db.run(fetch)

    async def _rows(self, sql: str, *args: Any) -> list[Any]:
        async def fetch(conn: Any) -> list[Any]:
            rows: list[Any] = await conn.fetch(sql, *args)
            return rows

        return await self.db.run(fetch)


class PostgresLocks(_Store):
    """:class:`stem.contracts.LockStore`: one row per lock, with a deadline."""

    async def acquire(self, name: str, owner: str, *, ttl: float) -> bool:
        at = now()
        sql = f"""
            INSERT INTO {self.s}.locks AS l (name, owner, expires_at)
            VALUES ($1, $2, $3)
            ON CONFLICT (name) DO UPDATE
            SET owner = excluded.owner, expires_at = excluded.expires_at
            WHERE l.expires_at <= $4 OR l.owner = excluded.owner
            RETURNING 1"""
        return await self._val(sql, name, owner, at + ttl, at) is not None

    async def renew(self, name: str, owner: str, *, ttl: float) -> bool:
        at = now()
        sql = f"""
            UPDATE {self.s}.locks SET expires_at = $3
            WHERE name = $1 AND owner = $2 AND expires_at > $4 RETURNING 1"""
        return await self._val(sql, name, owner, at + ttl, at) is not None

    async def release(self, name: str, owner: str) -> bool:
        sql = f"""
            DELETE FROM {self.s}.locks
            WHERE name = $1 AND owner = $2 AND expires_at > $3 RETURNING 1"""
        return await self._val(sql, name, owner, now()) is not None

    async def owner(self, name: str) -> str | None:
        sql = f"SELECT owner FROM {self.s}.locks WHERE name = $1 AND expires_at > $2"
        holder: str | None = await self._val(sql, name, now())
        return holder


class PostgresRevocations(_Store):
    """:class:`stem.contracts.RevocationStore`.

    Versions come from a sequence; writers serialize on a transaction-level
    advisory lock so versions become visible in the order they were taken
    (a reader that saw version n never later finds a new row below n).
    """

    _COLS = "task_id, terminate, reason, expires_at, version"

    async def revoke(self, revocation: Revocation) -> int:
        sql = f"""
            WITH l AS (SELECT pg_advisory_xact_lock(hashtext($5)))
            INSERT INTO {self.s}.revocations AS r ({self._COLS})
            SELECT $1, $2, $3, $4, nextval('{self.s}.revocation_version') FROM l
            ON CONFLICT (task_id) DO UPDATE
            SET terminate = excluded.terminate, reason = excluded.reason,
                expires_at = excluded.expires_at, version = excluded.version
            RETURNING version"""
        version: int = await self._val(
            sql,
            revocation.task_id,
            revocation.terminate,
            revocation.reason,
            revocation.expires_at,
            f"stem.revoke.{self.config.schema}",
        )
        return version

    @staticmethod
    def _revocation(row: Any) -> Revocation:
        return Revocation(
            task_id=row[0],
            terminate=row[1],
            reason=row[2],
            expires_at=row[3],
            version=row[4],
        )

    async def is_revoked(self, task_ids: Sequence[str]) -> dict[str, Revocation]:
        if not task_ids:
            return {}
        sql = f"""
            SELECT {self._COLS} FROM {self.s}.revocations
            WHERE task_id = ANY($1::text[])
              AND (expires_at IS NULL OR expires_at > $2)"""
        rows = await self._rows(sql, list(task_ids), now())
        return {row[0]: self._revocation(row) for row in rows}

    async def changes_since(self, version: int) -> tuple[list[Revocation], int]:
        sql = f"""
            SELECT r.task_id, r.terminate, r.reason, r.expires_at, r.version, m.latest
            FROM (SELECT coalesce(max(version), 0) AS latest
                  FROM {self.s}.revocations) m
            LEFT JOIN {self.s}.revocations r ON r.version > $1
              AND (r.expires_at IS NULL OR r.expires_at > $2)
            ORDER BY r.version"""
        rows = await self._rows(sql, version, now())
        latest = max(int(rows[0][5]), version) if rows else version
        return [self._revocation(row) for row in rows if row[0] is not None], latest


class PostgresHeartbeats(_Store):
    """:class:`stem.contracts.HeartbeatStore`: one row per worker."""

    async def beat(self, info: WorkerInfo, *, ttl: float) -> None:
        at = now()
        data = {
            "worker_id": info.worker_id,
            "hostname": info.hostname,
            "pid": info.pid,
            "queues": list(info.queues),
            "concurrency": info.concurrency,
            "started_at": info.started_at,
            "last_seen": at,
            "active": info.active,
            "processed": info.processed,
            "meta": dict(info.meta),
        }
        sql = f"""
            INSERT INTO {self.s}.workers (worker_id, info, expires_at)
            VALUES ($1, $2, $3)
            ON CONFLICT (worker_id) DO UPDATE
            SET info = excluded.info, expires_at = excluded.expires_at"""
        await self._val(sql, info.worker_id, dumps(data, what="worker info"), at + ttl)

    async def workers(self) -> list[WorkerInfo]:
        sql = f"""
            SELECT info FROM {self.s}.workers WHERE expires_at > $1
            ORDER BY worker_id"""
        rows = await self._rows(sql, now())
        return readable(worker_info_from, [row[0] for row in rows], "heartbeat")

    async def forget(self, worker_id: str) -> None:
        await self._val(f"DELETE FROM {self.s}.workers WHERE worker_id = $1", worker_id)


class PostgresLimiter(_Store):
    """:class:`stem.contracts.RateLimitStore`: a token bucket per row, updated
    atomically by one upsert (concurrent takers serialize on the row)."""

    async def take(self, key: str, *, rate: float, burst: int) -> float:
        if rate <= 0:
            raise ValueError(f"rate must be > 0 tokens per second, got {rate!r}")
        avail = "least($3, b.tokens + greatest($4 - b.ts, 0) * $2)"
        sql = f"""
            INSERT INTO {self.s}.buckets AS b (key, tokens, ts, taken)
            VALUES ($1, $3 - 1, $4, true)
            ON CONFLICT (key) DO UPDATE SET
                tokens = CASE WHEN {avail} >= 1 - $5 THEN {avail} - 1
                              ELSE {avail} END,
                taken = {avail} >= 1 - $5,
                ts = greatest(b.ts, $4)
            RETURNING taken, tokens"""

        async def take(conn: Any) -> tuple[bool, float]:
            row = await conn.fetchrow(
                sql, key, float(rate), float(burst), now_at, _EPSILON
            )
            return bool(row[0]), float(row[1])

        now_at = now()
        taken, tokens = await self.db.run(take)
        if taken:
            return 0.0
        return max((1.0 - tokens) / rate, _EPSILON)


async def reap(config: PostgresConfig, db: Db) -> None:
    """Delete expired results, group records, claims, locks, heartbeats and
    lapsed idle registrations."""
    s = config.quoted_schema
    statements = [
        f"DELETE FROM {s}.{table} WHERE expires_at IS NOT NULL AND expires_at <= $1"
        for table in ("results", "group_members", "once", "uniq", "locks")
    ]
    # Members of expired groups; the group records stay until their forget
    # time, so late members are still refused (stem._groupstate).
    statements.append(
        f"DELETE FROM {s}.group_members WHERE group_id IN (SELECT group_id FROM "
        f"{s}.groups WHERE expires_at IS NOT NULL AND expires_at <= $1)"
    )
    statements.append(
        f"DELETE FROM {s}.groups WHERE forget_at IS NOT NULL AND forget_at <= $1"
    )
    statements.append(f"DELETE FROM {s}.workers WHERE expires_at <= $1")
    statements.append(f"DELETE FROM {s}.event_listeners WHERE expires_at <= $1")
    if config.handoff:
        # Registrations of idle claims that lapsed (their workers are gone
        # or busy; a waiting claim renews its own every pass).
        statements.append(f"DELETE FROM {s}.idle WHERE upto <= $1")
    statements.append(
        f"DELETE FROM {s}.revocations WHERE expires_at IS NOT NULL "
        f"AND expires_at <= $1 AND version < "
        f"(SELECT max(version) FROM {s}.revocations)"
    )
    at = now()

    async def run(conn: Any) -> None:
        for statement in statements:
            await conn.execute(statement, at)

    await db.run(run)
