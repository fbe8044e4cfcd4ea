"""Locks, revocations, heartbeats and global rate limits on Redis.

Every deadline is judged with the client's clock (``stem._clock.now``), passed
to Lua; server-side ``PX`` expiries only free memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from stem._clock import now
from stem._codec import dumps, readable, revocation_from, worker_info_from
from stem._errors import DecodeError
from stem.contracts import Revocation, WorkerInfo

from ._conn import Conn, Keys, fmt
from ._results import lease_args


def _holder(reply: Any) -> str | None:
    value = reply[1]
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


@attrs.define(eq=False)
class RedisLocks:
    """:class:`stem.contracts.LockStore`: an ``expires|owner`` key per lock,
    acquired like ``SET NX PX``, renewed and released by an owner-checked
    script. The holder may acquire again (that renews it)."""

    conn: Conn
    keys: Keys

    async def _lease(self, name: str, op: str, owner: str, ttl: float | None) -> Any:
        return await self.conn.script(
            "lease", [self.keys.lock(name)], lease_args(op, owner, ttl)
        )

    async def acquire(self, name: str, owner: str, *, ttl: float) -> bool:
        return bool(int((await self._lease(name, "lock", owner, ttl))[0]))

    async def renew(self, name: str, owner: str, *, ttl: float) -> bool:
        return bool(int((await self._lease(name, "renew", owner, ttl))[0]))

    async def release(self, name: str, owner: str) -> bool:
        return bool(int((await self._lease(name, "release", owner, None))[0]))

    async def owner(self, name: str) -> str | None:
        return _holder(await self._lease(name, "get", "", None))


def _revocation_to_json(rev: Revocation) -> str:
    return dumps(
        {
            "task_id": rev.task_id,
            "terminate": rev.terminate,
            "reason": rev.reason,
            "expires_at": rev.expires_at,
        },
        what="revocation",
    )


def revocation_record(value: Any) -> Revocation:
    """``<version>\n<json>``; DecodeError (only) when it is not that."""
    version, _, body = value.partition(b"\n")
    try:
        number = int(version)
    except ValueError:
        raise DecodeError("stored revocation has no version") from None
    return revocation_from(body, number)


def revocation_live(rev: Revocation, at: float) -> bool:
    return rev.expires_at is None or rev.expires_at > at


@attrs.define(eq=False)
class RedisRevocations:
    """:class:`stem.contracts.RevocationStore`: a hash of records, a sorted set
    by version and a version counter, all in one slot."""

    conn: Conn
    keys: Keys

    async def revoke(self, revocation: Revocation) -> int:
        version = await self.conn.script(
            "revoke",
            self.keys.revocations,
            [revocation.task_id, _revocation_to_json(revocation)],
        )
        return int(version)

    async def is_revoked(self, task_ids: Sequence[str]) -> dict[str, Revocation]:
        if not task_ids:
            return {}
        key = self.keys.revocations[0]
        ids = list(task_ids)
        values = await self.conn.run(lambda: self.conn.client.hmget(key, ids))
        at = now()
        out: dict[str, Revocation] = {}
        present = [value for value in values if value is not None]
        for rev in readable(revocation_record, present, "revocation"):
            if revocation_live(rev, at):
                out[rev.task_id] = rev
        return out

    async def changes_since(self, version: int) -> tuple[list[Revocation], int]:
        latest, values = await self.conn.script(
            "changes", self.keys.revocations, [str(int(version))]
        )
        at = now()
        present = [value for value in values if value is not None]
        revs = readable(revocation_record, present, "revocation")
        live = sorted(
            (rev for rev in revs if revocation_live(rev, at)), key=lambda r: r.version
        )
        return live, int(latest)


def _worker_to_json(info: WorkerInfo) -> str:
    return dumps(
        {
            "worker_id": info.worker_id,
            "hostname": info.hostname,
            "pid": info.pid,
            "queues": list(info.queues),
            "concurrency": info.concurrency,
            "started_at": info.started_at,
            "last_seen": info.last_seen,
            "active": info.active,
            "processed": info.processed,
            "meta": dict(info.meta),
        },
        what="worker info",
    )


@attrs.define(eq=False)
class RedisHeartbeats:
    """:class:`stem.contracts.HeartbeatStore`: a hash of worker records plus a
    sorted set of deadlines (``now + ttl``, client time); stale entries are
    pruned by the next beat."""

    conn: Conn
    keys: Keys

    async def beat(self, info: WorkerInfo, *, ttl: float) -> None:
        at = now()
        await self.conn.script(
            "beat",
            self.keys.heartbeats,
            [info.worker_id, _worker_to_json(info), fmt(at + ttl), fmt(at)],
        )

    async def workers(self) -> list[WorkerInfo]:
        values = await self.conn.script("workers", self.keys.heartbeats, [fmt(now())])
        present = [value for value in values if value is not None]
        infos = readable(worker_info_from, present, "heartbeat")
        return sorted(infos, key=lambda info: info.worker_id)

    async def forget(self, worker_id: str) -> None:
        hash_key, zset_key = self.keys.heartbeats

        async def send() -> None:
            pipe = self.conn.pipeline(atomic=True)
            pipe.hdel(hash_key, worker_id)
            pipe.zrem(zset_key, worker_id)
            await pipe.execute()

        await self.conn.run(send)


@attrs.define(eq=False)
class RedisLimiter:
    """:class:`stem.contracts.RateLimitStore`: a token bucket per key in a
    hash, refilled and taken by one script with the client's ``now``."""

    conn: Conn
    keys: Keys

    async def take(self, key: str, *, rate: float, burst: int) -> float:
        if rate <= 0:
            raise ValueError(f"rate must be > 0 tokens per second, got {rate!r}")
        reply = await self.conn.script(
            "take",
            [self.keys.rate(key)],
            [fmt(now()), fmt(rate), str(max(int(burst), 1))],
        )
        text = reply.decode() if isinstance(reply, bytes) else str(reply)
        return max(float(text), 0.0)
