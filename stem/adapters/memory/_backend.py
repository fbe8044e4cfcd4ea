"""The in-memory backend bundle and its opener."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio

from stem._envelope import Envelope
from stem._errors import ConfigError
from stem._result import TaskResult
from stem.contracts import Capabilities

from ._broker import MemoryBroker
from ._events import MemoryEvents
from ._results import MemoryResultBackend
from ._schedules import MemorySchedules
from ._stores import (
    MemoryHeartbeatStore,
    MemoryLockStore,
    MemoryRateLimitStore,
    MemoryRevocationStore,
)
from ._workflows import MemoryWorkflowStore

CAPABILITIES = Capabilities(name="memory", cross_process=False, persistent=False)

_OPTIONS = frozenset({"broadcast_buffer"})


class MemoryBackend:
    """Every store of :class:`stem.contracts.Backend`, held in this process.

    It lives inside one ``trio.run``; nothing is shared with other processes
    and nothing survives the process.
    """

    capabilities: Capabilities = CAPABILITIES

    def __init__(self, url: str = "memory://", *, broadcast_buffer: int = 256) -> None:
        if broadcast_buffer < 1:
            raise ConfigError(
                f"broadcast_buffer must be at least 1, got {broadcast_buffer!r}"
            )
        self._url = url
        self.broker = MemoryBroker(broadcast_buffer=broadcast_buffer)
        self.results = MemoryResultBackend()
        self.locks = MemoryLockStore()
        self.schedules = MemorySchedules()
        self.revocations = MemoryRevocationStore()
        self.heartbeats = MemoryHeartbeatStore()
        self.limiter = MemoryRateLimitStore()
        self.workflows = MemoryWorkflowStore()
        self.events = MemoryEvents()

    @property
    def url(self) -> str:
        """The URL it was opened with (it holds no password)."""
        return self._url

    async def create_and_publish(
        self,
        results: Sequence[TaskResult],
        *,
        ttl: float | None,
        envelopes: Sequence[Envelope],
    ) -> list[bool]:
        """Create the QUEUED records of tasks that have none live and publish
        those envelopes, in one step (nothing awaits in between)."""
        await trio.lowlevel.checkpoint()
        flags = self.results.create_nowait(results, ttl=ttl)
        self.broker.publish_nowait(
            e for e, ok in zip(envelopes, flags, strict=True) if ok
        )
        return flags

    async def aclose(self) -> None:
        """Close every broadcast subscription."""
        await trio.lowlevel.checkpoint()
        self.broker.close()


@asynccontextmanager
async def open_backend(
    url: str = "memory://", **options: Any
) -> AsyncIterator[MemoryBackend]:
    """Open a fresh, empty in-memory backend.

    ``url`` must be ``memory://`` (anything after ``//`` is kept as a label).
    Options: ``broadcast_buffer`` (messages each subscriber may hold unread,
    default 256; a full subscriber misses messages, counted).
    """
    if not url.lower().startswith("memory://"):
        raise ConfigError(f"the memory backend needs a memory:// URL, got {url!r}")
    unknown = set(options) - _OPTIONS
    if unknown:
        raise ConfigError(
            f"unknown option(s) for the memory backend: {', '.join(sorted(unknown))};"
            f" known: {', '.join(sorted(_OPTIONS))}"
        )
    backend = MemoryBackend(url, **options)
    try:
        yield backend
    finally:
        backend.broker.close()
