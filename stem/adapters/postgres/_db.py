"""The bridge to asyncpg: one pool, one crossing per operation, error mapping.

Every database operation is an asyncio coroutine ``fn(conn, *args)`` run by
:meth:`Db.run` on a pooled connection through ``trio_asyncio.aio_as_trio``:
one bridge crossing per batch, never per task. Connection-level failures are
retried for ``retry_timeout`` seconds, then raised as
:class:`stem.BrokerUnavailable` with the URL redacted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import attrs
import trio
import trio_asyncio

from stem._errors import BrokerUnavailable, ConfigError

from ._config import PostgresConfig

T = TypeVar("T")

#: Errors meaning "the server cannot be reached right now".
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.TooManyConnectionsError,
)


#: Errors meaning "this URL names no database or role we may use": a
#: configuration error, not an outage (never retried).
REFUSED_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.InvalidCatalogNameError,  # no such database
    asyncpg.InvalidAuthorizationSpecificationError,  # no such role, bad password
)


def refused(config: PostgresConfig, exc: BaseException) -> ConfigError:
    return ConfigError(f"postgres at {config.url} refused the connection: {exc}")


def unavailable(config: PostgresConfig, exc: BaseException) -> BrokerUnavailable:
    return BrokerUnavailable(
        f"postgres at {config.url} is unavailable: {type(exc).__name__}: {exc}"
    )


async def _keep_session(conn: Any) -> None:
    """Pool reset hook: nothing to undo.

    asyncpg's default reset runs ``RESET ALL; UNLISTEN *; ...`` on every
    release: one extra round trip per operation. Our operations leave no
    session state behind (no SET, no LISTEN, no session advisory locks on
    pooled connections), and asyncpg still rolls back an open transaction
    before calling this hook.
    """


@attrs.define(eq=False)
class Db:
    """A pool owned by one backend, used from Trio through one asyncio loop."""

    config: PostgresConfig
    loop: Any  # trio_asyncio.TrioEventLoop
    pool: Any = None  # asyncpg.Pool
    _closed: bool = False

    def aio(self, fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        """``fn`` (an asyncio coroutine function) callable from Trio."""
        wrapped: Callable[..., Awaitable[T]] = trio_asyncio.aio_as_trio(
            fn, loop=self.loop
        )
        return wrapped

    async def connect(self, **kwargs: Any) -> Any:
        """A new standalone connection (listener, migrations)."""
        return await self.aio(asyncpg.connect)(self.config.dsn, **kwargs)

    async def open_pool(self) -> None:
        self.pool = await self.aio(asyncpg.create_pool)(
            self.config.dsn,
            min_size=self.config.pool_min,
            max_size=self.config.pool_max,
            max_inactive_connection_lifetime=300.0,
            reset=_keep_session,
        )

    async def close(self) -> None:
        """Close the pool; shielded, never raises."""
        self._closed = True
        pool, self.pool = self.pool, None
        if pool is None:
            return
        with trio.CancelScope(shield=True):
            try:
                with trio.move_on_after(5):
                    await self.aio(pool.close)()
                    return
            except Exception:
                pass
            try:
                pool.terminate()
            except Exception:
                pass

    async def _call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        # Runs on the asyncio side: one pooled connection for the whole op.
        async with self.pool.acquire() as conn:
            return await fn(conn, *args)

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``fn(conn, *args)`` on a pooled connection, retrying while the
        server is unreachable for up to ``retry_timeout`` seconds.

        A retried write may have been applied before the connection broke
        (at-least-once)."""
        if self._closed or self.pool is None:
            raise BrokerUnavailable(f"the postgres backend {self.config.url} is closed")
        deadline = trio.current_time() + self.config.retry_timeout
        delay = 0.02
        call = self.aio(self._call)
        while True:
            try:
                result: T = await call(fn, *args)
                return result
            except CONNECTION_ERRORS as exc:
                if self._closed:
                    raise unavailable(self.config, exc) from exc
                await self._expire()
                if trio.current_time() + delay > deadline:
                    raise unavailable(self.config, exc) from exc
            await trio.sleep(delay)
            delay = min(delay * 2, 0.25)

    async def run_once(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Like :meth:`run` without retrying (the caller has its own loop)."""
        if self._closed or self.pool is None:
            raise BrokerUnavailable(f"the postgres backend {self.config.url} is closed")
        try:
            once: T = await self.aio(self._call)(fn, *args)
            return once
        except CONNECTION_ERRORS as exc:
            await self._expire()
            raise unavailable(self.config, exc) from exc

    async def _expire(self) -> None:
        # After a server restart every pooled connection is dead: drop them
        # all at once instead of failing on each in turn.
        pool = self.pool
        if pool is not None:
            try:
                await self.aio(pool.expire_connections)()
            except Exception:
                pass
