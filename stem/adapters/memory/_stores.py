"""The small in-memory stores: locks, revocations, heartbeats, rate limits."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import trio

from stem._clock import now
from stem.contracts import Revocation, WorkerInfo

#: Tolerance for float rounding when a bucket is refilled to exactly one token.
_EPSILON = 1e-9


class MemoryLockStore:
    """Leases with an owner and a TTL; an expired lease has no owner."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[str, float]] = {}

    def _holder(self, name: str, at: float) -> str | None:
        held = self._locks.get(name)
        if held is None:
            return None
        if at >= held[1]:
            del self._locks[name]
            return None
        return held[0]

    async def acquire(self, name: str, owner: str, *, ttl: float) -> bool:
        """Take the lock if free (or already ours, which refreshes it)."""
        await trio.lowlevel.checkpoint()
        at = now()
        holder = self._holder(name, at)
        if holder is not None and holder != owner:
            return False
        self._locks[name] = (owner, at + ttl)
        return True

    async def renew(self, name: str, owner: str, *, ttl: float) -> bool:
        """Extend only if ``owner`` still holds the (unexpired) lock."""
        await trio.lowlevel.checkpoint()
        at = now()
        if self._holder(name, at) != owner:
            return False
        self._locks[name] = (owner, at + ttl)
        return True

    async def release(self, name: str, owner: str) -> bool:
        """Release only if ``owner`` holds it."""
        await trio.lowlevel.checkpoint()
        if self._holder(name, now()) != owner:
            return False
        del self._locks[name]
        return True

    async def owner(self, name: str) -> str | None:
        await trio.lowlevel.checkpoint()
        return self._holder(name, now())


class MemoryRevocationStore:
    """Revocations keyed by task id; every upsert takes the next version."""

    def __init__(self) -> None:
        self._revocations: dict[str, Revocation] = {}
        self._version = 0

    @staticmethod
    def _live(revocation: Revocation, at: float) -> bool:
        return revocation.expires_at is None or at < revocation.expires_at

    async def revoke(self, revocation: Revocation) -> int:
        """Upsert; returns the new version."""
        await trio.lowlevel.checkpoint()
        self._version += 1
        self._revocations[revocation.task_id] = attrs.evolve(
            revocation, version=self._version
        )
        return self._version

    async def is_revoked(self, task_ids: Sequence[str]) -> dict[str, Revocation]:
        await trio.lowlevel.checkpoint()
        at = now()
        found: dict[str, Revocation] = {}
        for task_id in task_ids:
            revocation = self._revocations.get(task_id)
            if revocation is not None and self._live(revocation, at):
                found[task_id] = revocation
        return found

    async def changes_since(self, version: int) -> tuple[list[Revocation], int]:
        await trio.lowlevel.checkpoint()
        at = now()
        changed = [
            r
            for r in self._revocations.values()
            if r.version > version and self._live(r, at)
        ]
        changed.sort(key=lambda r: r.version)
        return changed, self._version


class MemoryHeartbeatStore:
    """Worker heartbeats, each alive for its ttl after the beat."""

    def __init__(self) -> None:
        self._workers: dict[str, tuple[WorkerInfo, float]] = {}

    async def beat(self, info: WorkerInfo, *, ttl: float) -> None:
        await trio.lowlevel.checkpoint()
        self._workers[info.worker_id] = (info, now() + ttl)

    async def workers(self) -> list[WorkerInfo]:
        """Workers whose last beat is within its ttl (expired ones are purged)."""
        await trio.lowlevel.checkpoint()
        at = now()
        for worker_id in [w for w, (_, exp) in self._workers.items() if at >= exp]:
            del self._workers[worker_id]
        return [info for info, _ in self._workers.values()]

    async def forget(self, worker_id: str) -> None:
        await trio.lowlevel.checkpoint()
        self._workers.pop(worker_id, None)


class MemoryRateLimitStore:
    """Token buckets refilled evenly (``rate`` tokens per second)."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take_nowait(self, key: str, *, rate: float, burst: int) -> float:
        at = now()
        capacity = float(max(burst, 1))
        bucket = self._buckets.get(key)
        if bucket is None:
            tokens = capacity
        else:
            tokens = min(capacity, bucket[0] + (at - bucket[1]) * rate)
        if tokens >= 1.0 - _EPSILON:
            self._buckets[key] = (max(tokens - 1.0, 0.0), at)
            return 0.0
        self._buckets[key] = (tokens, at)
        return (1.0 - tokens) / rate if rate > 0 else float("inf")

    async def take(self, key: str, *, rate: float, burst: int) -> float:
        """0.0 if a token was taken, else seconds until one is available."""
        await trio.lowlevel.checkpoint()
        return self.take_nowait(key, rate=rate, burst=burst)
