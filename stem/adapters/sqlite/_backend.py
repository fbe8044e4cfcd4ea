"""The SQLite backend: every store on one file, opened from a URL."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from stem import _clock
from stem._envelope import Envelope
from stem._result import TaskResult
from stem.contracts import Capabilities

from ._broker import SQLiteBroker
from ._config import SQLiteConfig, parse_url
from ._db import Database
from ._events import SQLiteEvents
from ._results import SQLiteResults
from ._schedules import SQLiteSchedules
from ._stores import (
    SQLiteHeartbeats,
    SQLiteLocks,
    SQLiteRateLimits,
    SQLiteRevocations,
    reap,
)
from ._workflows import SQLiteWorkflows

#: How often expired rows are deleted (Stem-clock seconds).
REAP_INTERVAL = 60.0


@attrs.define(eq=False)
class SQLiteBackend:
    """:class:`stem.contracts.Backend` on one SQLite file (or ``:memory:``,
    single process). Open it with :func:`open_backend`."""

    config: SQLiteConfig
    capabilities: Capabilities
    db: Database
    broker: SQLiteBroker
    results: SQLiteResults
    locks: SQLiteLocks
    schedules: SQLiteSchedules
    revocations: SQLiteRevocations
    heartbeats: SQLiteHeartbeats
    limiter: SQLiteRateLimits
    workflows: SQLiteWorkflows
    events: SQLiteEvents
    _url: str
    _cancel: trio.CancelScope = attrs.field(factory=trio.CancelScope, init=False)
    _closed: bool = attrs.field(default=False, init=False)

    async def create_and_publish(
        self,
        results: Sequence[TaskResult],
        *,
        ttl: float | None,
        envelopes: Sequence[Envelope],
    ) -> list[bool]:
        """Create the QUEUED records of tasks that have none live and insert
        those messages, in one write transaction (atomic across processes)."""
        if not results:
            return []
        now = _clock.now()
        records = self.results.rows(results, ttl=ttl, now=now)
        messages = self.broker.rows(envelopes, now=now)

        def run(conn: sqlite3.Connection) -> list[bool]:
            flags = SQLiteResults.create_rows(conn, records, now)
            chosen = [m for m, ok in zip(messages, flags, strict=True) if ok]
            if chosen:
                SQLiteBroker.insert_rows(conn, chosen)
            return flags

        flags = await self.db.write(run)
        if any(flags):
            self.broker.published()
        return flags

    @classmethod
    def from_config(cls, config: SQLiteConfig, url: str) -> SQLiteBackend:
        db = Database(config, url)
        return cls(
            config=config,
            capabilities=Capabilities(
                name="sqlite",
                cross_process=not config.in_memory,
                persistent=not config.in_memory,
                server_clock=False,
                broadcast=True,
                global_rate_limits=True,
            ),
            db=db,
            broker=SQLiteBroker(
                db=db,
                poll_interval=config.poll_interval,
                broadcast_retention=config.broadcast_retention,
            ),
            results=SQLiteResults(db=db, poll_interval=config.poll_interval),
            locks=SQLiteLocks(db=db),
            schedules=SQLiteSchedules(db=db),
            revocations=SQLiteRevocations(db=db),
            heartbeats=SQLiteHeartbeats(db=db),
            limiter=SQLiteRateLimits(db=db),
            workflows=SQLiteWorkflows(db=db, poll_interval=config.poll_interval),
            events=SQLiteEvents(db=db, poll_interval=config.poll_interval),
            url=url,
        )

    @property
    def url(self) -> str:
        return self._url

    async def run_background(self) -> None:
        """The broadcast fan-out and the expiry reaper; stops at ``aclose``."""
        with self._cancel:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.broker.run_broadcast_poller)
                nursery.start_soon(self.db.wake.run, self._woken)
                while True:
                    await trio.sleep(REAP_INTERVAL)
                    await reap(self.db)

    def _woken(self, kinds: frozenset[int]) -> None:
        """Another process on this file committed ``kinds`` (``_wake.KINDS``)."""
        self.broker.woken(kinds)
        if ord("r") in kinds:
            self.results.woken()
        if ord("w") in kinds:
            self.workflows.woken()
        if ord("s") in kinds:
            self.schedules.woken()

    async def aclose(self) -> None:
        """Stop the background tasks and close the connection (idempotent)."""
        self._cancel.cancel()
        if not self._closed:
            self._closed = True
            await self.db.aclose()


@asynccontextmanager
async def open_backend(url: str, **options: Any) -> AsyncIterator[SQLiteBackend]:
    """Open ``sqlite:///relative.db``, ``sqlite:////abs/path.db`` or
    ``sqlite:///:memory:``; creates the file and migrates its schema.

    Options (query string or keyword): ``poll_interval`` (the fallback poll
    for other processes' writes, which normally wake this one through a
    datagram socket beside the file, see ``_wake``; seconds, default 0.05),
    ``busy_timeout`` (seconds a writer waits for another process's lock,
    default 10), ``synchronous`` (default NORMAL: a committed task survives a
    process crash; FULL also survives power loss).
    """
    config = parse_url(url, **options)
    backend = SQLiteBackend.from_config(config, url)
    await backend.db.open()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(backend.run_background)
            yield backend
            backend._cancel.cancel()
    finally:
        await backend.aclose()
