"""The Trio-native hot-path connection (stem/adapters/redis/_native.py): the
same replies and errors as redis-py, transactions, a cancelled command, a
restarted server, AUTH and SELECT, and the ``native`` option."""

from __future__ import annotations

import functools
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis.exceptions as rexc
import trio

from stem._errors import ConfigError
from stem.adapters.redis import open_backend
from stem.adapters.redis._conn import parse_url
from stem.adapters.redis._native import NativePool, NativePubSub, encode
from tests.fixtures_redis import RedisServer

pytestmark = pytest.mark.redis


def _ns() -> str:
    return f"n{uuid.uuid4().hex[:12]}"


def test_requests_are_resp_arrays_of_bulk_strings() -> None:
    """Arguments are encoded as redis-py encodes them; a bool is refused."""
    wire = encode([("SET", "k", b"v\r\n"), ("INCRBYFLOAT", "k", 1.5, 7)])
    assert wire == (
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n"
        b"*4\r\n$11\r\nINCRBYFLOAT\r\n$1\r\nk\r\n$3\r\n1.5\r\n$1\r\n7\r\n"
    )
    with pytest.raises(rexc.DataError):
        encode([("SET", "k", True)])


async def test_pipelines_give_redis_py_replies(redis_server: RedisServer) -> None:
    """A pipeline run natively and through redis-py returns the same values
    (the same protocol, then redis-py's response callbacks), in and out of
    a transaction."""
    seen: dict[bool, list[Any]] = {}
    for native in (True, False):
        ns = _ns()
        async with open_backend(
            redis_server.url, namespace=ns, native=native
        ) as backend:
            conn = backend.conn
            assert (conn.native is not None) is native

            def fill(pipe: Any, ns: str = ns) -> str:
                pipe.set(f"{ns}:a", "1")
                pipe.hset(f"{ns}:h", mapping={"x": "1", "y": "2"})
                pipe.hgetall(f"{ns}:h")
                pipe.sadd(f"{ns}:s", "m", "n")
                pipe.smembers(f"{ns}:s")
                pipe.zadd(f"{ns}:z", {"m": 1.5})
                pipe.zscore(f"{ns}:z", "m")
                pipe.exists(f"{ns}:a")
                pipe.get(f"{ns}:missing")
                pipe.expire(f"{ns}:a", 60)
                return "made"

            for atomic in (False, True):
                made, replies = await conn.execute(fill, atomic=atomic)
                assert made == "made"
                seen.setdefault(native, []).append(replies)
    assert seen[True] == seen[False]
    assert seen[True][0] == [
        True, 2, {b"x": b"1", b"y": b"2"}, 2, {b"m", b"n"}, 1, 1.5, 1, None, True
    ]  # fmt: skip


async def test_error_replies_are_redis_py_errors(redis_backend_factory: Any) -> None:
    """An error reply raises redis-py's class for it, in a pipeline or in a
    transaction, and the connection stays usable."""
    async with redis_backend_factory() as backend:
        native = backend.conn.native
        assert native is not None
        await native.execute(
            [(("SET", "plain", "v"), {})], transaction=False, callbacks=None
        )
        with pytest.raises(rexc.NoScriptError):
            await native.execute(
                [(("EVALSHA", "0" * 40, 0), {})], transaction=False, callbacks=None
            )
        with pytest.raises(rexc.ResponseError, match="WRONGTYPE"):
            await native.execute(
                [(("PING",), {}), (("HGET", "plain", "f"), {})],
                transaction=True,
                callbacks=None,
            )
        with pytest.raises(rexc.ResponseError, match="EXECABORT|wrong number"):
            await native.execute([(("GET",), {})], transaction=True, callbacks=None)
        assert await native.execute(
            [(("GET", "plain"), {})], transaction=False, callbacks=None
        ) == [b"v"]


async def test_a_cancelled_command_never_leaves_its_reply_behind(
    redis_backend_factory: Any,
) -> None:
    """A command cancelled while its reply is due closes its connection: the
    next command on the pool reads its own reply, not the stale one."""
    async with redis_backend_factory() as backend:
        native = backend.conn.native
        assert native is not None
        with trio.move_on_after(0.05):
            await native.execute(
                [(("BLPOP", "nothing-here", "0.3"), {})],
                transaction=False,
                callbacks=None,
            )
        await trio.sleep(0.4)
        got = await native.execute(
            [(("ECHO", "mine"), {})], transaction=False, callbacks=None
        )
        assert got == [b"mine"]


async def test_a_restarted_server_is_reconnected(tmp_path: Path) -> None:
    """The pooled connections die with the server; the next command after a
    restart reconnects within the retry window."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        async with open_backend(server.url, namespace=_ns(), retry_for=10) as backend:
            conn = backend.conn
            await conn.script("stats", backend.broker.keys.queue("q"), ["0"])
            server.kill()
            server.start()
            with trio.fail_after(15):
                await conn.script("stats", backend.broker.keys.queue("q"), ["0"])
    finally:
        server.stop()


async def test_auth_and_database_come_from_the_url(tmp_path: Path) -> None:
    """A password-protected server is logged into, the database is selected,
    and a wrong password is an AuthenticationError."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        async with open_backend(server.url) as backend:
            await backend.conn.run(
                lambda: backend.conn.client.config_set("requirepass", "s3cret")
            )
        for protocol in (2, 3):
            url = f"redis://default:s3cret@127.0.0.1:{server.port}/5"
            pool = NativePool(
                url,
                connect_timeout=2,
                command_timeout=2,
                max_connections=4,
                protocol=protocol,
            )
            try:
                replies = await pool.execute(
                    [(("CLIENT", "INFO"), {})], transaction=False, callbacks=None
                )
                assert b" db=5 " in replies[0]
                assert f" resp={protocol}".encode() in replies[0]
            finally:
                await pool.aclose()
        for protocol in (2, 3):
            wrong = NativePool(
                f"redis://:nope@127.0.0.1:{server.port}/0",
                connect_timeout=2,
                command_timeout=2,
                max_connections=1,
                protocol=protocol,
            )
            with pytest.raises(rexc.AuthenticationError):
                await wrong.execute(
                    [(("PING",), {})], transaction=False, callbacks=None
                )
    finally:
        server.stop()


def test_the_native_option_is_validated() -> None:
    """``native`` is true by default and takes true/false words only."""
    assert parse_url("redis://h/0", {}).native is True
    assert parse_url("redis://h/0?native=false", {}).native is False
    assert parse_url("redis://h/0", {"native": "off"}).native is False
    with pytest.raises(ConfigError, match="native"):
        parse_url("redis://h/0?native=maybe", {})


async def test_native_pub_sub_hears_what_is_published(
    redis_backend_factory: Any,
) -> None:
    """The Trio-native pub/sub connection confirms a subscription, hears a
    PUBLISH as redis-py's message dict, and returns None on a quiet channel."""
    async with redis_backend_factory() as backend:
        native = backend.conn.native
        assert native is not None and backend.hub.native is not None
        pubsub = backend.hub.native()
        try:
            await pubsub.subscribe("native-test")
            confirm = await pubsub.get_message(timeout=2)
            assert confirm == {
                "type": "subscribe",
                "channel": b"native-test",
                "data": 1,
            }
            await native.execute(
                [(("PUBLISH", "native-test", b"hello"), {})],
                transaction=False,
                callbacks=None,
            )
            heard = await pubsub.get_message(timeout=2)
            assert heard == {
                "type": "message",
                "channel": b"native-test",
                "data": b"hello",
            }
            assert await pubsub.get_message(timeout=0.05) is None
        finally:
            await pubsub.aclose()


async def test_a_server_speaking_garbage_is_a_connection_error(
    nursery: trio.Nursery,
) -> None:
    """Bytes that are not RESP end the connection as a ConnectionError (a
    transient error Stem retries, then reports as BrokerUnavailable), on the
    command pool and on the pub/sub connection."""

    async def garbage(stream: trio.SocketStream) -> None:
        try:
            await stream.receive_some(1024)
            await stream.send_all(b"?this is not RESP\r\n")
            await trio.sleep(1)
        except trio.BrokenResourceError:
            pass

    listeners = await nursery.start(
        functools.partial(trio.serve_tcp, garbage, 0, host="127.0.0.1")
    )
    port = listeners[0].socket.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"
    pool = NativePool(url, connect_timeout=2, command_timeout=2, max_connections=1)
    with pytest.raises(rexc.ConnectionError, match="bad reply"):
        await pool.execute([(("PING",), {})], transaction=False, callbacks=None)
    await pool.aclose()
    pubsub = NativePubSub(url, connect_timeout=2)
    await pubsub.subscribe("x")
    with pytest.raises(rexc.ConnectionError, match="bad reply"):
        await pubsub.get_message(timeout=2)
    await pubsub.aclose()
    with pytest.raises(rexc.ConnectionError, match="closed"):
        await pubsub.subscribe("y")
