"""A Trio-native Redis connection for the hot path.

The worker's and producer's per-task commands (publish, claim, settle, store
results) are script calls and pipelines. Through redis-py's asyncio client
each one crosses the trio-asyncio bridge: a handful of asyncio loop steps,
each in its own cancel scope, on top of Trio's own scheduling. Here the same
commands go over a Trio socket: the RESP request is encoded once, the reply
is parsed by hiredis, and a command is one ``send_all`` plus the reads its
reply needs (docs/decisions.md, "A Trio-native hot path").

Commands are still built with redis-py's pipeline object (it only records
them until executed), and its response callbacks shape the replies, so a
caller sees the same values either way. Errors are redis-py's exception
classes, so the retry and error mapping of :class:`~._conn.Conn` is shared.
redis-py keeps everything else: pub/sub, blocking reads, transactions with
WATCH, Redis Cluster and TLS (``rediss://``), where this path is not used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import hiredis
import redis.exceptions as rexc
import trio
from redis.connection import parse_url

#: Error reply prefixes and the redis-py exception each one is.
_ERRORS: tuple[tuple[str, type[rexc.RedisError]], ...] = (
    ("NOSCRIPT", rexc.NoScriptError),
    ("READONLY", rexc.ReadOnlyError),
    ("LOADING", rexc.BusyLoadingError),
    ("MASTERDOWN", rexc.MasterDownError),
    ("NOAUTH", rexc.AuthenticationError),
    ("WRONGPASS", rexc.AuthenticationError),
    ("EXECABORT", rexc.ExecAbortError),
    ("ERR invalid password", rexc.AuthenticationError),
    ("ERR AUTH", rexc.AuthenticationError),
)

#: Options redis-py records with a command that are not response-callback
#: keywords (redis-py drops them the same way before calling back).
_NOT_CALLBACK_OPTIONS = ("keys", "NEVER_DECODE", "EMPTY_RESPONSE")


def error_of(reply: BaseException) -> rexc.RedisError:
    """The redis-py exception for an error reply."""
    text = str(reply)
    for prefix, kind in _ERRORS:
        if text.startswith(prefix):
            return kind(text)
    return rexc.ResponseError(text)


def _arg(value: Any) -> bytes:
    # The same encoding as redis-py's Encoder (decode_responses=False).
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool):
        raise rexc.DataError(f"invalid input of type bool: {value!r}")
    if isinstance(value, int | float):
        return repr(value).encode()
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise rexc.DataError(f"invalid input of type {type(value).__name__}")


def encode(commands: Sequence[Sequence[Any]]) -> bytes:
    """RESP arrays of bulk strings, one per command, in one buffer."""
    out: list[bytes] = []
    append = out.append
    for args in commands:
        append(b"*%d\r\n" % len(args))
        for value in args:
            # str and bytes first: nearly every argument is one of them.
            kind = type(value)
            if kind is str:
                data = value.encode()
            elif kind is bytes:
                data = value
            else:
                data = _arg(value)
            append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


def supported(client_url: str) -> bool:
    """Whether this path can serve ``client_url``: plain TCP (TLS stays with
    redis-py)."""
    return client_url.partition("://")[0].lower() == "redis"


def speaks(client: Any) -> int:
    """The RESP version ``client`` (a redis-py asyncio client) negotiates."""
    pool = client.connection_pool
    probe = pool.connection_class(**pool.connection_kwargs)
    return 3 if str(getattr(probe, "protocol", 2)) == "3" else 2


@attrs.define(eq=False)
class _Connection:
    """One socket and its reply parser. Whatever goes wrong on the wire (the
    peer gone, bytes that are not RESP) is a redis-py ``ConnectionError``."""

    stream: trio.SocketStream
    reader: Any = attrs.field(factory=hiredis.Reader)

    async def send(self, payload: bytes) -> None:
        try:
            await self.stream.send_all(payload)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise rexc.ConnectionError(f"connection lost: {exc}") from exc

    async def reply(self) -> Any:
        """The next complete reply (an error reply is returned, not raised)."""
        reader = self.reader
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as exc:
                raise rexc.ConnectionError(f"bad reply from the server: {exc}") from exc
            if reply is not False:
                return reply
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise rexc.ConnectionError(f"connection lost: {exc}") from exc
            if not data:
                raise rexc.ConnectionError("connection closed by the server")
            reader.feed(data)

    async def request(self, payload: bytes, count: int) -> list[Any]:
        await self.send(payload)
        return [await self.reply() for _ in range(count)]

    def close_now(self) -> None:
        """Close without waiting (for connections nobody is using)."""
        self.stream.socket.close()


@attrs.define(eq=False)
class NativePool:
    """Connections to one Redis for Trio callers, at most ``max_connections``
    at once; a connection is returned only after a complete reply (a
    cancelled or failed command closes its connection)."""

    client_url: str
    connect_timeout: float
    command_timeout: float
    max_connections: int
    #: the protocol redis-py speaks (RESP3 from redis-py 8 on): replies then
    #: have the same shapes before its response callbacks
    protocol: int = 2
    _idle: list[_Connection] = attrs.field(factory=list, init=False)
    _limit: trio.CapacityLimiter = attrs.field(init=False)
    _target: dict[str, Any] = attrs.field(init=False)
    _closed: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        self._limit = trio.CapacityLimiter(self.max_connections)
        self._target = parse_url(self.client_url)  # type: ignore[no-untyped-call]

    async def execute(
        self,
        commands: Sequence[tuple[Sequence[Any], dict[str, Any]]],
        *,
        transaction: bool,
        callbacks: Any,
    ) -> list[Any]:
        """Run ``commands`` (redis-py's pipeline stack: ``(args, options)``)
        in one round trip, wrapped in MULTI/EXEC when ``transaction``; returns
        their replies shaped by ``callbacks`` and raises the first error."""
        wire = [args for args, _ in commands]
        if transaction:
            wire = [("MULTI",), *wire, ("EXEC",)]
        replies = await self._round_trip(encode(wire), len(wire))
        if transaction:
            replies = self._exec_replies(replies)
        out: list[Any] = []
        for reply, (args, options) in zip(replies, commands, strict=True):
            if isinstance(reply, hiredis.ReplyError):
                raise error_of(reply)
            callback = callbacks.get(args[0]) if callbacks is not None else None
            if callback is not None:
                kwargs = {
                    k: v for k, v in options.items() if k not in _NOT_CALLBACK_OPTIONS
                }
                reply = callback(reply, **kwargs)
            out.append(reply)
        return out

    @staticmethod
    def _exec_replies(replies: list[Any]) -> list[Any]:
        # MULTI's OK, one QUEUED (or a refusal) per command, EXEC's array.
        for reply in replies[:-1]:
            if isinstance(reply, hiredis.ReplyError):
                raise error_of(reply)
        done = replies[-1]
        if isinstance(done, hiredis.ReplyError):
            raise error_of(done)
        if done is None:
            raise rexc.WatchError("the transaction was aborted")
        result: list[Any] = done
        return result

    async def _round_trip(self, payload: bytes, count: int) -> list[Any]:
        if self._closed:
            raise rexc.ConnectionError("the connection pool is closed")
        # A free slot is taken without yielding (``async with`` on a
        # CapacityLimiter passes through the scheduler first: a hop before
        # every command's bytes leave).
        try:
            self._limit.acquire_nowait()
        except trio.WouldBlock:
            await self._limit.acquire()
        try:
            return await self._on_connection(payload, count)
        finally:
            self._limit.release()

    async def _on_connection(self, payload: bytes, count: int) -> list[Any]:
        conn = self._idle.pop() if self._idle else await self._open()
        ok = False
        try:
            with trio.fail_after(self.command_timeout):
                replies = await conn.request(payload, count)
            ok = True
        except trio.TooSlowError:
            raise rexc.TimeoutError(
                f"no reply within {self.command_timeout} s"
            ) from None
        except (OSError, rexc.ConnectionError):
            self._drop_idle()  # the server may be gone: they are dead too
            raise
        finally:
            if ok and not self._closed:
                self._idle.append(conn)
            else:
                await trio.aclose_forcefully(conn.stream)
        return replies

    async def _open(self) -> _Connection:
        return await connect(
            self._target, timeout=self.connect_timeout, protocol=self.protocol
        )

    def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close_now()

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        with trio.CancelScope(shield=True):
            for conn in idle:
                await trio.aclose_forcefully(conn.stream)


async def connect(
    target: dict[str, Any], *, timeout: float, protocol: int
) -> _Connection:
    """A logged-in connection to ``target`` (``redis.connection.parse_url``'s
    keywords), on its database, speaking RESP ``protocol``."""
    try:
        with trio.fail_after(timeout):
            stream = await trio.open_tcp_stream(
                target.get("host") or "localhost", int(target.get("port") or 6379)
            )
    except trio.TooSlowError:
        raise rexc.TimeoutError(f"no connection within {timeout} s") from None
    except OSError as exc:
        raise rexc.ConnectionError(f"cannot connect: {exc}") from exc
    conn = _Connection(stream)
    hello: list[tuple[Any, ...]] = []
    password = target.get("password")
    user = target.get("username")
    if protocol == 3:
        login = ("AUTH", user or "default", password) if password is not None else ()
        hello.append(("HELLO", 3, *login))
    elif password is not None:
        hello.append(("AUTH", user, password) if user else ("AUTH", password))
    db = int(target.get("db") or 0)
    if db:
        hello.append(("SELECT", db))
    if not hello:
        return conn
    try:
        with trio.fail_after(timeout):
            replies = await conn.request(encode(hello), len(hello))
    except trio.TooSlowError:
        await trio.aclose_forcefully(stream)
        raise rexc.TimeoutError(f"no login reply within {timeout} s") from None
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    for reply in replies:
        if isinstance(reply, hiredis.ReplyError):
            await trio.aclose_forcefully(stream)
            raise error_of(reply)
    return conn


@attrs.define(eq=False)
class NativePubSub:
    """A pub/sub connection with redis-py's ``PubSub`` surface as the hub
    uses it (``subscribe``, ``unsubscribe``, ``get_message``, ``aclose``),
    as Trio coroutines: a wake reaches its waiter without an asyncio step.
    It speaks RESP2, where pub/sub messages are plain arrays."""

    client_url: str
    connect_timeout: float
    _conn: _Connection | None = attrs.field(default=None, init=False)
    _sending: trio.Lock = attrs.field(factory=trio.Lock, init=False)
    _closed: bool = attrs.field(default=False, init=False)

    async def _connection(self) -> _Connection:
        if self._closed:
            # A caller that still held this object after the hub dropped it:
            # never open a connection nobody would close.
            raise rexc.ConnectionError("the pub/sub connection is closed")
        if self._conn is None:
            target = parse_url(self.client_url)  # type: ignore[no-untyped-call]
            self._conn = await connect(target, timeout=self.connect_timeout, protocol=2)
        return self._conn

    async def _send(self, *command: str) -> None:
        async with self._sending:
            conn = await self._connection()
            await conn.send(encode([command]))

    async def subscribe(self, *channels: str) -> None:
        if channels:
            await self._send("SUBSCRIBE", *channels)

    async def unsubscribe(self, *channels: str) -> None:
        if channels:
            await self._send("UNSUBSCRIBE", *channels)

    async def get_message(self, timeout: float) -> dict[str, Any] | None:
        """The next message (as redis-py's dict), or None after ``timeout``."""
        conn = self._conn
        if conn is None:
            async with self._sending:
                conn = await self._connection()
        # A cancelled read loses nothing: received bytes stay in the parser.
        with trio.move_on_after(timeout):
            return _message(await conn.reply())
        return None

    async def aclose(self) -> None:
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            await trio.aclose_forcefully(conn.stream)


def _message(reply: Any) -> dict[str, Any] | None:
    # ``[kind, channel, data]``; an error or anything else is no message.
    if isinstance(reply, hiredis.ReplyError):
        raise error_of(reply)
    if not isinstance(reply, list) or len(reply) != 3:
        return None
    kind, channel, data = reply
    if not isinstance(kind, bytes):
        return None
    return {"type": kind.decode("latin-1"), "channel": channel, "data": data}
