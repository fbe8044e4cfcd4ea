"""Connections, the trio-asyncio bridge, retries and key names."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlunsplit

import attrs
import redis.asyncio as aioredis
import redis.exceptions as rexc
import trio
import trio_asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from stem._errors import BrokerUnavailable, ConfigError
from stem._redact import redact
from stem._text import has_control
from stem._urlcheck import split_url

from ._scripts import SCRIPTS

T = TypeVar("T")

#: Errors after which a command may succeed when tried again.
TRANSIENT: tuple[type[BaseException], ...] = (
    rexc.ConnectionError,  # includes BusyLoadingError (server loading its AOF)
    rexc.TimeoutError,
    rexc.ReadOnlyError,
    rexc.TryAgainError,
    rexc.MasterDownError,
    OSError,
    asyncio.TimeoutError,
)
#: The same, plus a cancellation coming from the asyncio side.
TRANSIENT_OR_CANCELLED: tuple[type[BaseException], ...] = (
    *TRANSIENT,
    asyncio.CancelledError,
)

_BUCKETS = 10


@attrs.frozen(kw_only=True)
class Settings:
    """What the URL and options of :func:`open_backend` say."""

    url: str  # as given (with password)
    client_url: str  # without Stem's own query options
    namespace: str = "stem"
    retry_for: float = 3.0
    connect_timeout: float = 2.0
    command_timeout: float = 5.0
    max_connections: int = 64


def parse_url(url: str, options: dict[str, Any]) -> Settings:
    """Split Stem's options (``namespace``, ``retry_for``) from redis-py's.
    A malformed host or port, or a database that is not a number
    (``redis://host/notadb``), is a ConfigError."""
    parts = split_url(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ConfigError(f"not a redis URL: {redact(url)!r}")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    database = parts.path.strip("/") or query.get("db", "0")
    if not database.isdigit() or not database.isascii():
        raise ConfigError(
            f"invalid redis database {database!r} in {redact(url)!r}: expected "
            "a number, as in redis://host:6379/0"
        )
    namespace = str(options.pop("namespace", query.pop("namespace", "stem")))
    if (
        not namespace
        or len(namespace) > 100
        or has_control(namespace)
        or any(c in namespace for c in " {}")
    ):
        raise ConfigError(
            f"invalid namespace {namespace!r}: expected 1-100 characters without "
            "spaces, braces or control characters"
        )
    numbers: dict[str, float] = {}
    for name in ("retry_for", "connect_timeout", "command_timeout"):
        raw = options.pop(name, query.pop(name, None))
        if raw is not None:
            try:
                numbers[name] = float(raw)
            except (TypeError, ValueError):
                numbers[name] = math.nan
            if not math.isfinite(numbers[name]) or numbers[name] < 0:
                raise ConfigError(
                    f"option {name} must be a number of seconds >= 0, got {raw!r}"
                )
    max_conn = options.pop("max_connections", query.pop("max_connections", 64))
    try:
        max_conn = int(max_conn)
    except (TypeError, ValueError):
        raise ConfigError(
            f"option max_connections must be a whole number, got {max_conn!r}"
        ) from None
    if options:
        raise ConfigError(f"unknown redis backend options: {sorted(options)}")
    client_url = urlunsplit(parts._replace(query=urlencode(query)))
    return Settings(
        url=url,
        client_url=client_url,
        namespace=namespace,
        max_connections=int(max_conn),
        **numbers,
    )


def make_client(settings: Settings, *, blocking: bool) -> aioredis.Redis:
    """A client whose own retries are off (Stem retries, with a bound).

    ``blocking`` clients (pub/sub) have no read timeout: a quiet channel is not
    an error (redis-py's default ``socket_timeout`` would break it).
    """
    client: aioredis.Redis = aioredis.Redis.from_url(
        settings.client_url,
        socket_timeout=None if blocking else settings.command_timeout,
        socket_connect_timeout=settings.connect_timeout,
        retry=Retry(NoBackoff(), 0),
        max_connections=2 if blocking else settings.max_connections,
        decode_responses=False,
    )
    return client


def aio(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """``fn`` (an asyncio coroutine function) callable from Trio."""
    wrapped: Callable[..., Awaitable[T]] = trio_asyncio.aio_as_trio(fn)
    return wrapped


@attrs.define(eq=False)
class Conn:
    """The command client with bounded retries and error mapping."""

    settings: Settings
    client: aioredis.Redis
    _scripts_loaded: bool = False

    @property
    def redacted(self) -> str:
        return redact(self.settings.url)

    def unavailable(self, exc: BaseException) -> BrokerUnavailable:
        return BrokerUnavailable(
            f"redis at {self.redacted} is unavailable: {type(exc).__name__}: {exc}"
        )

    async def run(
        self, make: Callable[[], Awaitable[T]], *, until: float | None = None
    ) -> T:
        """Run ``make()`` on the asyncio loop; retry transient failures with
        backoff for ``retry_for`` seconds (or until ``until``, Trio time), then
        raise :class:`stem.BrokerUnavailable`. Cancelling it may leave the
        command executed or not (callers only use it that way for shutdown)."""
        start = trio.current_time()
        deadline = start + self.settings.retry_for
        if until is not None:
            deadline = max(deadline, until)
        pause = 0.02
        reloaded = False
        while True:
            try:
                return await aio(make)()
            except rexc.AuthenticationError:
                raise  # a wrong password is not an outage: never retried
            except rexc.NoScriptError as exc:
                if reloaded:
                    raise self.unavailable(exc) from exc
                reloaded = True
                await self.load_scripts()
            except TRANSIENT as exc:
                if trio.current_time() + pause > deadline:
                    raise self.unavailable(exc) from exc
                await trio.sleep(pause)
                pause = min(pause * 2, 0.5)
            except asyncio.CancelledError as exc:
                # The asyncio side cancelled (loop closing): let a pending Trio
                # cancellation win, else report the backend as gone.
                await trio.lowlevel.checkpoint()
                raise self.unavailable(exc) from exc

    async def load_scripts(self) -> None:
        async def load() -> None:
            pipe = self.client.pipeline(transaction=False)
            for script in SCRIPTS.values():
                pipe.script_load(script.source)
            await pipe.execute()

        await self.run(load)

    async def script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """EVALSHA one script (one round trip)."""
        sha = SCRIPTS[name].sha

        async def call() -> Any:
            return await self.client.evalsha(sha, len(keys), *keys, *args)

        return await self.run(call)

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            try:
                await aio(self.client.aclose)()
            except TRANSIENT_OR_CANCELLED:
                pass


def evalsha(pipe: Any, name: str, keys: Sequence[str], args: Sequence[Any]) -> None:
    """Queue one script call on a pipeline."""
    pipe.evalsha(SCRIPTS[name].sha, len(keys), *keys, *args)


def fmt(value: float) -> str:
    """A float as exact text for Lua's ``tonumber``."""
    return repr(float(value))


def px(ttl: float | None, *, grace: float = 1.0) -> str:
    """Milliseconds for a server-side expiry backstop ('0' = none)."""
    if ttl is None:
        return "0"
    return str(max(1, math.ceil((ttl + grace) * 1000)))


@attrs.frozen
class Keys:
    """Key names under a namespace. A queue's keys share the hash tag
    ``{<ns>:q:<queue>}`` so they live in one Redis Cluster slot.

    Pub/sub channels are server-wide in Redis (a PUBLISH on database 0
    reaches subscribers on every database), so channel names carry the
    database number as well as the namespace: ``<ns>@<db>:...``."""

    ns: str
    db: int = 0

    @property
    def _channel(self) -> str:
        return f"{self.ns}@{self.db}"

    def queue(self, queue: str, dead_queue: str | None = None) -> list[str]:
        tag = f"{self.ns}:{{{self.ns}:q:{queue}}}"
        keys = [f"{tag}:s{b}" for b in range(_BUCKETS)]
        keys += [f"{tag}:d", f"{tag}:db", f"{tag}:seq", f"{tag}:l"]
        dtag = tag if dead_queue is None else f"{self.ns}:{{{self.ns}:q:{dead_queue}}}"
        keys += [f"{dtag}:x", f"{dtag}:xh", f"{dtag}:xs"]
        return keys

    @property
    def queues(self) -> str:
        return f"{self.ns}:queues"

    def wake(self, queue: str) -> str:
        return f"{self._channel}:wake:{queue}"

    def done(self, task_id: str) -> str:
        return f"{self._channel}:done:{task_id}"

    @property
    def broadcast(self) -> str:
        return f"{self._channel}:broadcast"

    def result(self, task_id: str) -> str:
        return f"{self.ns}:r:{{{task_id}}}"

    def group(self, group_id: str) -> str:
        return f"{self.ns}:g:{{{group_id}}}"

    def once(self, key: str) -> str:
        return f"{self.ns}:once:{{{key}}}"

    def unique(self, key: str) -> str:
        return f"{self.ns}:u:{{{key}}}"

    def lock(self, name: str) -> str:
        return f"{self.ns}:lock:{{{name}}}"

    def rate(self, key: str) -> str:
        return f"{self.ns}:rl:{{{key}}}"

    @property
    def revocations(self) -> list[str]:
        tag = f"{self.ns}:{{{self.ns}:rev}}"
        return [f"{tag}:h", f"{tag}:z", f"{tag}:v"]

    @property
    def heartbeats(self) -> list[str]:
        tag = f"{self.ns}:{{{self.ns}:hb}}"
        return [f"{tag}:h", f"{tag}:z"]
