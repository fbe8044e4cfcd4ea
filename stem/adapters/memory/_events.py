"""The event log in this process: a bounded deque and a wake-up event."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import attrs
import trio

from stem._clock import now
from stem.contracts import StoredEvent

#: Records kept by default.
DEFAULT_CAPACITY = 10_000


@attrs.define(eq=False)
class MemoryEvents:
    """:class:`stem.contracts.EventStore` held in this process."""

    capacity: int = DEFAULT_CAPACITY
    _log: deque[StoredEvent] = attrs.field(init=False)
    _cursor: int = attrs.field(default=0, init=False)
    _listeners: dict[str, float] = attrs.field(factory=dict, init=False)
    _appended: trio.Event = attrs.field(factory=trio.Event, init=False)

    def __attrs_post_init__(self) -> None:
        if self.capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {self.capacity!r}")
        self._log = deque(maxlen=self.capacity)

    async def append(self, bodies: Sequence[bytes]) -> int:
        await trio.lowlevel.checkpoint()
        for body in bodies:
            self._cursor += 1
            self._log.append(StoredEvent(cursor=self._cursor, body=bytes(body)))
        if bodies:
            self._appended.set()
            self._appended = trio.Event()
        return self._cursor

    def _after(self, after: int, limit: int) -> list[StoredEvent]:
        if limit < 1 or after >= self._cursor:
            return []
        oldest = self._log[0].cursor if self._log else self._cursor + 1
        start = max(0, after + 1 - oldest)
        return [self._log[i] for i in range(start, min(len(self._log), start + limit))]

    async def read(
        self, after: int, *, limit: int = 100, wait: float = 0.0
    ) -> list[StoredEvent]:
        await trio.lowlevel.checkpoint()
        found = self._after(after, limit)
        if found or wait <= 0:
            return found
        with trio.move_on_after(wait):
            await self._appended.wait()
        return self._after(after, limit)

    async def last_cursor(self) -> int:
        await trio.lowlevel.checkpoint()
        return self._cursor

    async def listen(self, listener: str, *, ttl: float) -> None:
        await trio.lowlevel.checkpoint()
        self._listeners[listener] = now() + ttl

    async def unlisten(self, listener: str) -> None:
        await trio.lowlevel.checkpoint()
        self._listeners.pop(listener, None)

    async def listeners(self) -> int:
        await trio.lowlevel.checkpoint()
        at = now()
        for name in [n for n, until in self._listeners.items() if until <= at]:
            del self._listeners[name]
        return len(self._listeners)
