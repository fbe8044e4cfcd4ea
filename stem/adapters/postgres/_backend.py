"""Opening the Postgres backend: loop, pool, migrations, background tasks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import attrs
import trio
import trio_asyncio

from stem._envelope import Envelope
from stem._result import TaskResult
from stem.contracts import Capabilities

from ._broker import PostgresBroker
from ._config import PostgresConfig, parse_url
from ._db import CONNECTION_ERRORS, REFUSED_ERRORS, Db, refused, unavailable
from ._events import PostgresEvents
from ._notify import Hub
from ._results import PostgresResults
from ._schedules import PostgresSchedules
from ._schema import HANDOFF_VERSION, apply_migrations, current_version
from ._stores import (
    PostgresHeartbeats,
    PostgresLimiter,
    PostgresLocks,
    PostgresRevocations,
    reap,
)
from ._workflows import PostgresWorkflows

CAPABILITIES = Capabilities(name="postgres", server_clock=False)


@attrs.define(eq=False)
class PostgresBackend:
    """Every store of :class:`stem.contracts.Backend` on one Postgres schema.

    Owns a connection pool and one LISTEN connection; open it with
    :func:`open_backend`.
    """

    config: PostgresConfig
    db: Db
    hub: Hub
    broker: PostgresBroker
    results: PostgresResults
    locks: PostgresLocks
    schedules: PostgresSchedules
    revocations: PostgresRevocations
    heartbeats: PostgresHeartbeats
    limiter: PostgresLimiter
    workflows: PostgresWorkflows
    events: PostgresEvents
    capabilities: Capabilities = CAPABILITIES
    _cancel: trio.CancelScope | None = None

    @property
    def url(self) -> str:
        """The URL with any password replaced by ``***``."""
        return self.config.url

    async def create_and_publish(
        self,
        results: Sequence[TaskResult],
        *,
        ttl: float | None,
        envelopes: Sequence[Envelope],
    ) -> list[bool]:
        """QUEUED records and their messages in one statement (one
        transaction): see :class:`stem.contracts.CombinedPublish`."""
        return await self.results.create_and_publish(
            results, ttl=ttl, envelopes=envelopes
        )

    async def aclose(self) -> None:
        """Stop the background tasks and close every connection (shielded)."""
        if self._cancel is not None:
            self._cancel.cancel()
        self.hub.close()
        await self.db.close()


async def _migrate_with(config: PostgresConfig, db: Db) -> list[int]:
    conn: Any = None
    try:
        conn = await db.connect()
        applied: list[int] = await db.aio(apply_migrations)(conn, config.schema)
        return applied
    except REFUSED_ERRORS as exc:
        raise refused(config, exc) from None
    except CONNECTION_ERRORS as exc:
        raise unavailable(config, exc) from exc
    finally:
        if conn is not None:
            with trio.CancelScope(shield=True):
                try:
                    await db.aio(conn.close)()
                except Exception:
                    pass


@asynccontextmanager
async def _asyncio_loop() -> AsyncIterator[Any]:
    """The trio-asyncio loop of this task, opening one if none is open."""
    loop = trio_asyncio.current_loop.get()
    if loop is not None:
        yield loop
        return
    async with trio_asyncio.open_loop() as opened:
        yield opened


async def migrate(url: str, **options: Any) -> list[int]:
    """Apply pending schema migrations for ``url``; returns the versions
    applied (empty when up to date). Safe to run from many processes at once.
    """
    config = parse_url(url, **options)
    try:
        async with _asyncio_loop() as loop:
            return await _migrate_with(config, Db(config=config, loop=loop))
    except BaseExceptionGroup as group:
        inner = _single(group)
        if inner is group:
            raise
        raise inner from None


async def _reaper(backend: PostgresBackend) -> None:
    while True:
        await trio.sleep(backend.config.reap_interval)
        try:
            await reap(backend.config, backend.db)
        except CONNECTION_ERRORS:
            pass
        except Exception as exc:
            if type(exc).__name__ != "BrokerUnavailable":
                raise


def _single(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


@asynccontextmanager
async def open_backend(url: str, **options: Any) -> AsyncIterator[PostgresBackend]:
    """Open the Postgres backend named by ``url``.

    ``postgresql://user:pass@host:port/db?schema=stem&sslmode=require``;
    options (in the query or as keywords): ``schema``, ``pool_min``,
    ``pool_max``, ``poll_interval``, ``retry_timeout``, ``reap_interval``,
    ``auto_migrate``. Migrates the schema on first use unless
    ``auto_migrate=false``. Raises BrokerUnavailable when the server cannot
    be reached. An exception from the body (or from opening) comes out as
    itself, not wrapped in the exception group of an internal nursery.
    """
    config = parse_url(url, **options)
    try:
        async with _open(config) as backend:
            yield backend
    except BaseExceptionGroup as group:
        inner = _single(group)
        if inner is group:
            raise
        raise inner from None


@asynccontextmanager
async def _open(config: PostgresConfig) -> AsyncIterator[PostgresBackend]:
    async with AsyncExitStack() as stack:
        loop = await stack.enter_async_context(_asyncio_loop())
        db = Db(config=config, loop=loop)
        if config.auto_migrate:
            await _migrate_with(config, db)
        try:
            await db.open_pool()
        except REFUSED_ERRORS as exc:
            raise refused(config, exc) from None
        except CONNECTION_ERRORS as exc:
            raise unavailable(config, exc) from exc
        stack.push_async_callback(db.close)
        if config.handoff and not config.auto_migrate:
            # A schema migrated by hand may predate the handoff (migration 8).
            version = await db.run(lambda conn: current_version(conn, config.schema))
            if version < HANDOFF_VERSION:
                config = attrs.evolve(config, handoff=False)
                db.config = config
        hub = Hub(config=config, db=db)
        backend = PostgresBackend(
            config=config,
            db=db,
            hub=hub,
            broker=PostgresBroker(config=config, db=db, hub=hub),
            results=PostgresResults(config=config, db=db, hub=hub),
            locks=PostgresLocks(config=config, db=db),
            schedules=PostgresSchedules(config=config, db=db),
            revocations=PostgresRevocations(config=config, db=db),
            heartbeats=PostgresHeartbeats(config=config, db=db),
            limiter=PostgresLimiter(config=config, db=db),
            workflows=PostgresWorkflows(config=config, db=db, hub=hub),
            events=PostgresEvents(config=config, db=db),
        )
        stack.push_async_callback(backend.aclose)
        async with trio.open_nursery() as nursery:
            backend._cancel = nursery.cancel_scope
            nursery.start_soon(hub.run_dispatcher)
            await nursery.start(hub.run_listener)
            nursery.start_soon(_reaper, backend)
            try:
                yield backend
            finally:
                nursery.cancel_scope.cancel()
