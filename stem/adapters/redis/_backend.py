"""The Redis backend bundle and :func:`open_backend`."""

from __future__ import annotations

import functools
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import redis.asyncio as aioredis
import redis.exceptions as rexc
import trio
import trio_asyncio

from stem._clock import now
from stem._codec import encode_result
from stem._envelope import Envelope
from stem._errors import ConfigError
from stem._redact import redact
from stem._result import TaskResult
from stem.contracts import Capabilities

from ._broker import RedisBroker
from ._conn import (
    Conn,
    Keys,
    Settings,
    fmt,
    make_client,
    make_cluster,
    parse_url,
    px,
)
from ._events import RedisEvents
from ._hub import Hub
from ._native import NativePool, NativePubSub, speaks, supported
from ._results import RedisResults
from ._schedules import RedisSchedules
from ._stores import RedisHeartbeats, RedisLimiter, RedisLocks, RedisRevocations
from ._taskindex import queue_index
from ._workflows import RedisWorkflows

CAPABILITIES = Capabilities(
    name="redis",
    cross_process=True,
    persistent=True,
    server_clock=False,
    broadcast=True,
    global_rate_limits=True,
)


CLUSTER_CAPABILITIES = attrs.evolve(CAPABILITIES, name="redis-cluster")


@attrs.define(eq=False)
class RedisStores:
    """Every store of :class:`stem.contracts.Backend` on one Redis namespace
    (a single Redis or a Redis Cluster).

    Opened by :func:`open_backend`; closing it closes both connection pools
    and stops the pub/sub listener."""

    settings: Settings
    conn: Conn
    hub: Hub
    broker: RedisBroker
    results: RedisResults
    locks: RedisLocks
    schedules: RedisSchedules
    revocations: RedisRevocations
    heartbeats: RedisHeartbeats
    limiter: RedisLimiter
    workflows: RedisWorkflows
    events: RedisEvents
    capabilities: Capabilities = CAPABILITIES
    _scope: trio.CancelScope | None = None
    _sub_client: aioredis.Redis | None = None
    _listeners: dict[tuple[str, int], aioredis.Redis] = attrs.field(factory=dict)
    _closed: bool = False

    @property
    def url(self) -> str:
        return redact(self.settings.url)

    @property
    def namespace(self) -> str:
        return self.settings.namespace

    async def aclose(self) -> None:
        """Stop the listener and close every connection (shielded)."""
        if self._closed:
            return
        self._closed = True
        if self._scope is not None:
            self._scope.cancel()
        with trio.CancelScope(shield=True):
            await self.conn.aclose()
            if self._sub_client is not None:
                await Conn(self.settings, self._sub_client).aclose()
            for client in self._listeners.values():
                await Conn(self.settings, client).aclose()


@attrs.define(eq=False)
class RedisBackend(RedisStores):
    """The backend on one Redis: every store, plus ``create_and_publish``
    (:class:`stem.contracts.CombinedPublish`)."""

    async def create_and_publish(
        self,
        results: Sequence[TaskResult],
        *,
        ttl: float | None,
        envelopes: Sequence[Envelope],
    ) -> list[bool]:
        """Create the QUEUED records of tasks that have none live and publish
        those envelopes, in ONE round trip (one MULTI/EXEC of one script per
        queue; each script checks, stores and publishes atomically)."""
        if not results:
            return []
        at = now()
        records = [encode_result(r) for r in results]

        def fill(pipe: Any) -> list[tuple[str, list[int]]]:
            calls = self.broker.queue_create_publish(
                pipe,
                envelopes,
                records,
                expires=fmt(at + ttl) if ttl is not None else "",
                expiry=px(ttl),
            )
            queue_index(pipe, self.results.keys, results)
            return calls

        calls, replies = await self.conn.execute(fill, atomic=True)
        replies = replies[1 : 1 + len(calls)]
        flags = [False] * len(envelopes)
        created: list[str] = []
        for (queue, indexes), reply in zip(calls, replies, strict=True):
            for index, flag in zip(indexes, reply, strict=True):
                flags[index] = bool(int(flag))
            if any(int(flag) for flag in reply):
                created.append(queue)
        self.broker.published(created)
        return flags


@attrs.define(eq=False)
class RedisClusterBackend(RedisStores):
    """The backend on a Redis Cluster (``redis+cluster://``). It does not
    offer ``create_and_publish``: a task's record and its queue live in
    different slots, which no script or transaction can span, so the
    BrokerActor creates the record, then publishes (and takes the record
    back if the publish fails)."""

    capabilities: Capabilities = CLUSTER_CAPABILITIES


@attrs.define(eq=False)
class _Listeners:
    """The pub/sub client of the next cluster node to listen on, round the
    nodes the cluster client knows (and the seeds): a classic PUBLISH
    reaches every node of a cluster, replicas included."""

    settings: Settings
    cluster: Any
    clients: dict[tuple[str, int], aioredis.Redis]
    #: where the round starts: random, so the listeners of many processes
    #: spread over the nodes
    turn: int = attrs.field(factory=lambda: random.randrange(1 << 16))

    def __call__(self) -> aioredis.Redis:
        nodes = [(node.host, int(node.port)) for node in self.cluster.get_nodes()]
        nodes += [seed for seed in self.settings.seeds if seed not in nodes]
        address = nodes[self.turn % len(nodes)]
        self.turn += 1
        client = self.clients.get(address)
        if client is None:
            client = self.clients[address] = make_client(
                self.settings, blocking=True, node=address
            )
        return client


def _build(settings: Settings) -> RedisStores:
    if settings.cluster:
        client: Any = make_cluster(settings)
        listeners: dict[tuple[str, int], aioredis.Redis] = {}
        pick = _Listeners(settings, client, listeners)
        sub = None
        keys = Keys(settings.namespace, db=0)
        hub = Hub(pick(), keys, redact(settings.url), pick=pick)
        kind: type[RedisStores] = RedisClusterBackend
    else:
        client = make_client(settings, blocking=False)
        sub = make_client(settings, blocking=True)
        db = client.connection_pool.connection_kwargs.get("db", 0)
        keys = Keys(settings.namespace, db=int(db or 0))
        hub = Hub(sub, keys, redact(settings.url))
        listeners = {}
        kind = RedisBackend
    native = None
    if settings.native and not settings.cluster and supported(settings.client_url):
        hub.native = functools.partial(
            NativePubSub, settings.client_url, connect_timeout=settings.connect_timeout
        )
        native = NativePool(
            settings.client_url,
            connect_timeout=settings.connect_timeout,
            command_timeout=settings.command_timeout,
            max_connections=settings.max_connections,
            protocol=speaks(client),
        )
    conn = Conn(settings, client, native=native)
    return kind(
        settings=settings,
        conn=conn,
        hub=hub,
        broker=RedisBroker(
            conn, keys, hub, handoff=settings.handoff and not settings.cluster
        ),
        results=RedisResults(conn, keys, hub),
        locks=RedisLocks(conn, keys),
        schedules=RedisSchedules(conn, keys.ns),
        revocations=RedisRevocations(conn, keys),
        heartbeats=RedisHeartbeats(conn, keys),
        limiter=RedisLimiter(conn, keys),
        workflows=RedisWorkflows(conn, keys, hub),
        events=RedisEvents(conn, keys),
        sub_client=sub,
        listeners=listeners,
    )


@asynccontextmanager
async def _open(settings: Settings) -> AsyncIterator[RedisStores]:
    backend = _build(settings)
    try:
        try:
            await backend.conn.load_scripts()
        except (rexc.AuthenticationError, rexc.ResponseError) as exc:
            # A wrong password, or a database number the server does not
            # have: a configuration error, not an outage.
            raise ConfigError(
                f"redis at {redact(settings.url)} refused the connection: {exc}"
            ) from None
        try:
            async with trio.open_nursery() as nursery:
                backend._scope = nursery.cancel_scope
                await nursery.start(backend.hub.run)
                try:
                    yield backend
                finally:
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # The listener never raises (it reconnects); surface the body's
            # own exception instead of a one-member group.
            raise _single(group) from None
    finally:
        await backend.aclose()


@asynccontextmanager
async def open_backend(url: str, **options: Any) -> AsyncIterator[RedisStores]:
    """Open the Redis backend named by ``url``.

    ``redis://[[user]:password@]host[:port][/db][?namespace=stem]`` or
    ``rediss://`` for TLS; ``redis+cluster://host:port[,host:port...]`` (or
    ``rediss+cluster://``, or ``?cluster=true``) for a Redis Cluster named
    by its seed nodes (a :class:`RedisClusterBackend`). Options (keyword or
    query): ``namespace`` (key prefix, default ``"stem"``), ``retry_for``
    (seconds a failing command is retried before
    :class:`stem.BrokerUnavailable`, default 3), ``connect_timeout`` (2),
    ``command_timeout`` (5), ``max_connections`` (64).

    Uses the trio-asyncio loop of the current Trio run, or opens one for its
    own lifetime when none is open.
    """
    settings = parse_url(url, dict(options))
    try:
        if trio_asyncio.current_loop.get() is None:
            async with trio_asyncio.open_loop(), _open(settings) as backend:
                yield backend
        else:
            async with _open(settings) as backend:
                yield backend
    except BaseExceptionGroup as group:
        raise _single(group) from None


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception inside nested one-member groups (the loop's and the
    listener's nurseries), else the group itself."""
    inner: BaseException = group
    while isinstance(inner, BaseExceptionGroup) and len(inner.exceptions) == 1:
        inner = inner.exceptions[0]
    return inner
