"""A minimal third-party Stem backend: "acme".

The lock store is written here from scratch; to keep the example short, every
other store is borrowed from Stem's in-memory backend. A real backend writes
each store against its own database the same way, and proves it with the
contract suite (test_acme_backend.py beside this file).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

import stem
from stem.adapters.memory import MemoryBackend
from stem.contracts import Capabilities


class AcmeLockStore:
    """stem.contracts.LockStore: leases with an owner and a ttl, in a dict."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[str, float]] = {}  # name -> (owner, until)

    def _owner_now(self, name: str) -> str | None:
        owner, until = self._held.get(name, ("", 0.0))
        return owner if stem.now() < until else None

    async def acquire(self, name: str, owner: str, *, ttl: float) -> bool:
        await trio.lowlevel.checkpoint()
        if self._owner_now(name) not in (None, owner):
            return False
        self._held[name] = (owner, stem.now() + ttl)
        return True

    async def renew(self, name: str, owner: str, *, ttl: float) -> bool:
        await trio.lowlevel.checkpoint()
        if self._owner_now(name) != owner:
            return False
        self._held[name] = (owner, stem.now() + ttl)
        return True

    async def release(self, name: str, owner: str) -> bool:
        await trio.lowlevel.checkpoint()
        if self._owner_now(name) != owner:
            return False
        del self._held[name]
        return True

    async def owner(self, name: str) -> str | None:
        await trio.lowlevel.checkpoint()
        return self._owner_now(name)


class AcmeBackend:
    """stem.contracts.Backend: every store, its capabilities, a URL, aclose."""

    # No broadcast (remote control): the suite skips that check, saying why.
    capabilities = Capabilities(
        name="acme", cross_process=False, persistent=False, broadcast=False
    )

    def __init__(self) -> None:
        borrowed = MemoryBackend("memory://acme")
        self._borrowed = borrowed
        self.locks = AcmeLockStore()
        self.broker = borrowed.broker
        self.results = borrowed.results
        self.schedules = borrowed.schedules
        self.revocations = borrowed.revocations
        self.heartbeats = borrowed.heartbeats
        self.limiter = borrowed.limiter
        self.workflows = borrowed.workflows
        self.events = borrowed.events
        # Enqueue in one atomic step (stem.contracts.CombinedPublish): create
        # the QUEUED records of unknown task ids and publish those messages.
        self.create_and_publish = borrowed.create_and_publish

    @property
    def url(self) -> str:
        return "acme://"  # a real URL with its password replaced by ***

    async def aclose(self) -> None:
        await self._borrowed.aclose()


@asynccontextmanager
async def open_acme_backend() -> AsyncIterator[AcmeBackend]:
    """Open a fresh, empty acme backend; close it when the block exits."""
    backend = AcmeBackend()
    try:
        yield backend
    finally:
        with trio.CancelScope(shield=True):
            await backend.aclose()
