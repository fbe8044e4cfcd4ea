"""Connections, the trio-asyncio bridge, retries and key names."""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import SplitResult, parse_qsl, urlencode, urlunsplit

import attrs
import redis.asyncio as aioredis
import redis.exceptions as rexc
import trio
import trio_asyncio
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot

from stem._errors import BrokerUnavailable, ConfigError
from stem._redact import redact
from stem._text import has_control
from stem._urlcheck import split_url

from ._native import NativePool
from ._scripts import SCRIPTS

T = TypeVar("T")
R = TypeVar("R")

#: Errors after which a command may succeed when tried again.
TRANSIENT: tuple[type[BaseException], ...] = (
    rexc.ConnectionError,  # includes BusyLoadingError (server loading its AOF)
    rexc.TimeoutError,
    rexc.ReadOnlyError,
    rexc.TryAgainError,
    rexc.MasterDownError,
    # Redis Cluster: a failover in progress, a slot moving or not yet served
    rexc.ClusterDownError,
    rexc.MovedError,
    rexc.AskError,
    rexc.SlotNotCoveredError,
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
    #: Redis Cluster (``redis+cluster://``): the seed nodes, else empty
    seeds: tuple[tuple[str, int], ...] = ()
    #: the hot path's commands on Trio-native connections (``?native=false``
    #: keeps every command on redis-py); used on one Redis over plain TCP
    native: bool = True
    #: an idle worker's waiting claim is handed new messages by the publish
    #: script itself, one hop instead of wake + claim (``?handoff=false``
    #: turns it off); used on one Redis, never on a cluster
    handoff: bool = True

    @property
    def cluster(self) -> bool:
        return bool(self.seeds)


#: URL schemes of Redis Cluster and the plain scheme of each
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
_TRUE = ("1", "true", "yes", "on")


def _cluster_parts(url: str) -> tuple[SplitResult, tuple[tuple[str, int], ...]]:
    """``redis+cluster://[user:password@]host:port[,host:port...]/...``: the
    URL with its first seed only (and the plain scheme), and every seed."""
    scheme, _, rest = url.partition("://")
    netloc, slash, tail = rest.partition("/")
    if not slash:
        netloc, query_mark, tail = rest.partition("?")
        tail = query_mark + tail
    else:
        tail = "/" + tail
    userinfo, at, hosts = netloc.rpartition("@")
    seeds: list[tuple[str, int]] = []
    for host in hosts.split(","):
        try:
            one = split_url(f"redis://{host.strip()}")
            port = one.port
        except (ConfigError, ValueError):
            one, port = None, None
        if one is None or not one.hostname or one.path or one.query:
            raise ConfigError(
                f"invalid redis cluster node {host[:60]!r} in {redact(url)!r}: "
                "expected host:port, as in redis+cluster://h1:7000,h2:7001"
            )
        seeds.append((one.hostname, port or 6379))
    plain = CLUSTER_SCHEMES.get(scheme.lower(), scheme.lower())
    first = f"{userinfo}{at}{hosts.split(',')[0].strip()}"
    return split_url(f"{plain}://{first}{tail}"), tuple(seeds)


def parse_url(url: str, options: dict[str, Any]) -> Settings:
    """Split Stem's options (``namespace``, ``retry_for``) from redis-py's.
    A malformed host or port, or a database that is not a number
    (``redis://host/notadb``), is a ConfigError.

    ``redis+cluster://h1:p1,h2:p2`` (or ``rediss+cluster://`` for TLS, or
    ``?cluster=true`` on a ``redis://`` URL) names a Redis Cluster by its
    seed nodes; a cluster has database 0 only."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    seeds: tuple[tuple[str, int], ...] = ()
    if scheme in CLUSTER_SCHEMES:
        parts, seeds = _cluster_parts(url)
    else:
        parts = split_url(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ConfigError(f"not a redis URL: {redact(url)!r}")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    cluster = options.pop("cluster", query.pop("cluster", None))
    if cluster is not None and str(cluster).lower() not in (
        *_TRUE,
        "0",
        "false",
        "no",
        "off",
    ):
        raise ConfigError(f"option cluster must be true or false, got {cluster!r}")
    native, handoff = (_flag(name, options, query) for name in ("native", "handoff"))
    if not seeds and cluster is not None and str(cluster).lower() in _TRUE:
        seeds = ((parts.hostname or "localhost", parts.port or 6379),)
    database = parts.path.strip("/") or query.get("db", "0")
    if not database.isdigit() or not database.isascii():
        raise ConfigError(
            f"invalid redis database {database!r} in {redact(url)!r}: expected "
            "a number, as in redis://host:6379/0"
        )
    if seeds and int(database) != 0:
        raise ConfigError(
            f"a redis cluster has database 0 only, got {database!r} in {redact(url)!r}"
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
        seeds=seeds,
        native=native,
        handoff=handoff,
        **numbers,
    )


def _flag(name: str, options: dict[str, Any], query: dict[str, str]) -> bool:
    """A true/false option (default true), from ``options`` or the URL."""
    raw = options.pop(name, query.pop(name, "true"))
    if str(raw).lower() not in (*_TRUE, "0", "false", "no", "off"):
        raise ConfigError(f"option {name} must be true or false, got {raw!r}")
    return str(raw).lower() in _TRUE


def make_cluster(settings: Settings) -> RedisCluster:
    """The Redis Cluster command client (its own retries off, as below; it
    refreshes its slot map after a connection error or a MOVED reply)."""
    cluster: RedisCluster = RedisCluster.from_url(
        settings.client_url,
        startup_nodes=[ClusterNode(host, port) for host, port in settings.seeds],
        socket_timeout=settings.command_timeout,
        socket_connect_timeout=settings.connect_timeout,
        retry=Retry(NoBackoff(), 0),
        max_connections=settings.max_connections,
        decode_responses=False,
    )
    return cluster


def make_client(
    settings: Settings, *, blocking: bool, node: tuple[str, int] | None = None
) -> aioredis.Redis:
    """A client whose own retries are off (Stem retries, with a bound).

    ``blocking`` clients (pub/sub) have no read timeout: a quiet channel is not
    an error (redis-py's default ``socket_timeout`` would break it). ``node``
    names one node of a cluster to talk to directly.

    The command client's pool is a ``BlockingConnectionPool``: when all
    ``max_connections`` are busy a command waits for one to come back (each
    is held at most ``command_timeout``) instead of failing with "Too many
    connections"; a burst of concurrent calls is backpressure, not an outage.
    """
    url = settings.client_url
    if node is not None:
        parts = split_url(url)
        userinfo = parts.netloc.rpartition("@")[0]
        host = f"[{node[0]}]" if ":" in node[0] else node[0]
        netloc = f"{userinfo}@{host}:{node[1]}" if userinfo else f"{host}:{node[1]}"
        url = urlunsplit(parts._replace(netloc=netloc))
    options: dict[str, Any] = {
        "socket_timeout": None if blocking else settings.command_timeout,
        "socket_connect_timeout": settings.connect_timeout,
        "retry": Retry(NoBackoff(), 0),
        "decode_responses": False,
    }
    if blocking:
        client: aioredis.Redis = aioredis.Redis.from_url(
            url, max_connections=2, **options
        )
        return client
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=settings.max_connections, timeout=None, **options
    )
    pooled: aioredis.Redis = aioredis.Redis.from_pool(pool)
    return pooled


def aio(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """``fn`` (an asyncio coroutine function) callable from Trio."""
    wrapped: Callable[..., Awaitable[T]] = trio_asyncio.aio_as_trio(fn)
    return wrapped


@attrs.define(eq=False)
class Conn:
    """The command client with bounded retries and error mapping.

    On Redis Cluster ``client`` is redis-py's ``RedisCluster``: every command
    and script goes to the master of its keys' slot, and a pipeline is split
    by node. ``pipeline`` and ``node_client`` hide the difference."""

    settings: Settings
    client: Any  # aioredis.Redis, or RedisCluster on a cluster
    #: The Trio-native connections of the hot path (``_native``), if used
    native: NativePool | None = None
    _scripts_loaded: bool = False
    _nodes: dict[tuple[str, int], aioredis.Redis] = attrs.field(factory=dict)

    @property
    def redacted(self) -> str:
        return redact(self.settings.url)

    @property
    def cluster(self) -> bool:
        return self.settings.cluster

    def unavailable(self, exc: BaseException) -> BrokerUnavailable:
        return BrokerUnavailable(
            f"redis at {self.redacted} is unavailable: {type(exc).__name__}: {exc}"
        )

    def pipeline(self, *, atomic: bool) -> Any:
        """A pipeline (one round trip per node). ``atomic``: MULTI/EXEC on a
        single Redis; on a cluster, whose transactions cannot span slots,
        each command (each script) is atomic on its own."""
        if self.cluster:
            return self.client.pipeline(transaction=False)
        return self.client.pipeline(transaction=atomic)

    def node_client(self, key: str) -> aioredis.Redis:
        """A plain client for WATCH/MULTI transactions on ``key``'s slot: the
        command client on a single Redis; on a cluster, a client of the
        master currently serving the slot (all keys a transaction touches
        must share that slot). Call it again after a failure: the cluster
        client refreshes its slot map after a connection error."""
        if not self.cluster:
            client: aioredis.Redis = self.client
            return client
        node = self.client.get_node_from_key(key)
        address = (node.host, int(node.port))
        found = self._nodes.get(address)
        if found is None:
            found = self._nodes[address] = make_client(
                self.settings, blocking=False, node=address
            )
        return found

    async def refresh(self) -> None:
        """On a cluster, re-read the slot map (after a failure: a failover
        may have moved slots to a replica). A failure here is left to the
        next command's retry."""
        if self.cluster:
            try:
                await aio(self.client.nodes_manager.initialize)()
            except (TimeoutError, rexc.RedisError, OSError):
                pass

    async def run(
        self, make: Callable[[], Awaitable[T]], *, until: float | None = None
    ) -> T:
        """Run ``make()`` on the asyncio loop; retry transient failures with
        backoff for ``retry_for`` seconds (or until ``until``, Trio time), then
        raise :class:`stem.BrokerUnavailable`. Cancelling it may leave the
        command executed or not (callers only use it that way for shutdown)."""
        return await self._retrying(aio(make), until)

    async def execute(
        self, fill: Callable[[Any], R], *, atomic: bool, until: float | None = None
    ) -> tuple[R, list[Any]]:
        """Run a pipeline (one round trip): ``fill(pipe)`` queues its commands
        (and returns what the caller needs to read the replies); returns that
        and the replies. On one Redis over plain TCP it runs on the
        Trio-native connection (``_native``), else through redis-py.
        Retried as :meth:`run` is (``fill`` is called again for each try)."""
        native = self.native
        if native is None:

            async def send() -> tuple[R, list[Any]]:
                pipe = self.pipeline(atomic=atomic)
                made = fill(pipe)
                return made, list(await pipe.execute())

            return await self.run(send, until=until)

        async def attempt() -> tuple[R, list[Any]]:
            pipe = self.pipeline(atomic=atomic)
            made = fill(pipe)
            replies = await native.execute(
                pipe.command_stack,
                transaction=atomic,
                callbacks=pipe.response_callbacks,
            )
            return made, replies

        return await self._retrying(attempt, until)

    async def _retrying(
        self, attempt: Callable[[], Awaitable[T]], until: float | None
    ) -> T:
        start = trio.current_time()
        deadline = start + self.settings.retry_for
        if until is not None:
            deadline = max(deadline, until)
        pause = 0.02
        reloaded = False
        while True:
            try:
                return await attempt()
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
                if self.cluster:
                    await self.refresh()
            except asyncio.CancelledError as exc:
                # The asyncio side cancelled (loop closing): let a pending Trio
                # cancellation win, else report the backend as gone.
                await trio.lowlevel.checkpoint()
                raise self.unavailable(exc) from exc

    async def load_scripts(self) -> None:
        async def load() -> None:
            if self.cluster:
                # SCRIPT LOAD goes to every master (no pipelining on a cluster)
                for script in SCRIPTS.values():
                    await self.client.script_load(script.source)
                return
            pipe = self.client.pipeline(transaction=False)
            for script in SCRIPTS.values():
                pipe.script_load(script.source)
            await pipe.execute()

        await self.run(load)

    async def script(
        self,
        name: str,
        keys: Sequence[str],
        args: Sequence[Any],
        *,
        until: float | None = None,
    ) -> Any:
        """EVALSHA one script (one round trip)."""
        sha = SCRIPTS[name].sha
        native = self.native
        if native is None:

            async def call() -> Any:
                return await self.client.evalsha(sha, len(keys), *keys, *args)

            return await self.run(call, until=until)
        command: tuple[tuple[Any, ...], dict[str, Any]] = (
            ("EVALSHA", sha, len(keys), *keys, *args),
            {},
        )

        async def attempt() -> Any:
            replies = await native.execute([command], transaction=False, callbacks=None)
            return replies[0]

        return await self._retrying(attempt, until)

    async def aclose(self) -> None:
        if self.native is not None:
            await self.native.aclose()
        with trio.CancelScope(shield=True):
            for client in [self.client, *self._nodes.values()]:
                try:
                    await aio(client.aclose)()
                except TRANSIENT_OR_CANCELLED:
                    pass


def slot_groups(keys: Sequence[str], *, cluster: bool, size: int) -> list[list[int]]:
    """Indexes of ``keys`` in chunks of at most ``size`` for multi-key
    script calls: consecutive on a single Redis; on a cluster, each chunk's
    keys share one hash slot (a script may touch one slot only)."""
    if not cluster:
        return [
            list(range(start, min(start + size, len(keys))))
            for start in range(0, len(keys), size)
        ]
    by_slot: dict[int, list[int]] = {}
    for index, key in enumerate(keys):
        by_slot.setdefault(key_slot(key.encode()), []).append(index)
    return [
        group[start : start + size]
        for group in by_slot.values()
        for start in range(0, len(group), size)
    ]


def evalsha(pipe: Any, name: str, keys: Sequence[str], args: Sequence[Any]) -> None:
    """Queue one script call on a pipeline (by ``execute_command``: redis-py
    refuses ``evalsha`` by name on a cluster pipeline, though it routes the
    command by its keys' slot)."""
    pipe.execute_command("EVALSHA", SCRIPTS[name].sha, len(keys), *keys, *args)


def fmt(value: float) -> str:
    """A float as exact text for Lua's ``tonumber``."""
    return repr(float(value))


def px(ttl: float | None, *, grace: float = 1.0) -> str:
    """Milliseconds for a server-side expiry backstop ('0' = none)."""
    if ttl is None:
        return "0"
    return str(max(1, math.ceil((ttl + grace) * 1000)))


@functools.lru_cache(maxsize=1024)
def _queue_keys(ns: str, queue: str, dead_queue: str | None) -> tuple[str, ...]:
    """The 17 keys of a queue's scripts (made once per queue: every publish,
    claim and settle names them)."""
    tag = f"{ns}:{{{ns}:q:{queue}}}"
    keys = [f"{tag}:s{b}" for b in range(_BUCKETS)]
    keys += [f"{tag}:d", f"{tag}:db", f"{tag}:seq", f"{tag}:l"]
    dtag = tag if dead_queue is None else f"{ns}:{{{ns}:q:{dead_queue}}}"
    keys += [f"{dtag}:x", f"{dtag}:xh", f"{dtag}:xs"]
    return tuple(keys)


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
        return list(_queue_keys(self.ns, queue, dead_queue))

    @property
    def queues(self) -> str:
        return f"{self.ns}:queues"

    def wake(self, queue: str) -> str:
        return f"{self._channel}:wake:{queue}"

    def idle(self, queue: str) -> str:
        """The queue's idle claims (hash: consumer -> ``capacity|lease|
        registered until|channel``), in the queue's slot."""
        return f"{self.ns}:{{{self.ns}:q:{queue}}}:w"

    def hand(self, consumer: str) -> str:
        """The channel on which publishes hand ``consumer`` its messages."""
        return f"{self._channel}:hand:{consumer}"

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
