"""The event log on Redis: a stream capped at its capacity (``XADD MAXLEN``).

A record's cursor is its stream id ``ms-seq`` as one integer
(``ms * 2**20 + seq``), so cursors grow with the stream. Listeners are a
sorted set scored by their deadline (client time). Readers in other
processes poll (one ``XRANGE`` every ``poll_interval`` seconds while they
wait); readers in this process are woken by the append.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import trio

from stem._clock import now
from stem.contracts import StoredEvent

from ._conn import Conn, Keys, fmt

#: Records kept by default.
DEFAULT_CAPACITY = 10_000
#: How often a waiting reader looks again (seconds).
POLL_INTERVAL = 0.1
_SEQ_BITS = 20


def _cursor(stream_id: Any) -> int:
    text = stream_id.decode() if isinstance(stream_id, bytes) else str(stream_id)
    ms, _, seq = text.partition("-")
    return (int(ms) << _SEQ_BITS) + int(seq or 0)


def _stream_id(cursor: int) -> str:
    return f"{cursor >> _SEQ_BITS}-{cursor & ((1 << _SEQ_BITS) - 1)}"


@attrs.define(eq=False)
class RedisEvents:
    """:class:`stem.contracts.EventStore` on one stream per namespace."""

    conn: Conn
    keys: Keys
    capacity: int = DEFAULT_CAPACITY
    poll_interval: float = POLL_INTERVAL
    _appended: trio.Event = attrs.field(factory=trio.Event, init=False)

    @property
    def _stream(self) -> str:
        return f"{self.keys.ns}:events"

    @property
    def _listeners(self) -> str:
        return f"{self.keys.ns}:events:listeners"

    async def append(self, bodies: Sequence[bytes]) -> int:
        if not bodies:
            return await self.last_cursor()
        stream, cap = self._stream, self.capacity

        async def send() -> list[Any]:
            pipe = self.conn.pipeline(atomic=True)
            for body in bodies:
                pipe.xadd(stream, {"b": bytes(body)}, maxlen=cap, approximate=False)
            result: list[Any] = await pipe.execute()
            return result

        ids = await self.conn.run(send)
        self._appended.set()
        self._appended = trio.Event()
        return _cursor(ids[-1])

    async def read(
        self, after: int, *, limit: int = 100, wait: float = 0.0
    ) -> list[StoredEvent]:
        deadline = trio.current_time() + max(wait, 0.0)
        start = "(" + _stream_id(max(after, 0))

        async def fetch() -> list[Any]:
            rows = await self.conn.client.xrange(
                self._stream, min=start, max="+", count=max(limit, 1)
            )
            return list(rows or [])

        while True:
            appended = self._appended
            rows = [] if limit < 1 else await self.conn.run(fetch)
            if rows:
                return [
                    StoredEvent(cursor=_cursor(rid), body=_body(fields))
                    for rid, fields in rows
                ]
            left = deadline - trio.current_time()
            if left <= 0:
                return []
            with trio.move_on_after(min(left, self.poll_interval)):
                await appended.wait()

    async def last_cursor(self) -> int:
        async def fetch() -> list[Any]:
            rows = await self.conn.client.xrevrange(
                self._stream, max="+", min="-", count=1
            )
            return list(rows or [])

        rows = await self.conn.run(fetch)
        return _cursor(rows[0][0]) if rows else 0

    async def listen(self, listener: str, *, ttl: float) -> None:
        at = now()

        async def send() -> None:
            pipe = self.conn.pipeline(atomic=True)
            pipe.zremrangebyscore(self._listeners, "-inf", fmt(at))
            pipe.zadd(self._listeners, {listener: at + ttl})
            await pipe.execute()

        await self.conn.run(send)

    async def unlisten(self, listener: str) -> None:
        async def send() -> None:
            await self.conn.client.zrem(self._listeners, listener)

        await self.conn.run(send)

    async def listeners(self) -> int:
        at = now()

        async def fetch() -> int:
            return int(
                await self.conn.client.zcount(self._listeners, f"({fmt(at)}", "+inf")
            )

        return await self.conn.run(fetch)


def _body(fields: Any) -> bytes:
    """The record's ``b`` field (a foreign writer's entry may lack it: then
    the whole entry as text, which the reader refuses to decode)."""
    if isinstance(fields, dict):
        body = fields.get(b"b", fields.get("b"))
        if isinstance(body, bytes):
            return body
        if isinstance(body, str):
            return body.encode()
    return repr(fields).encode()
