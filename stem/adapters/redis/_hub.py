"""One pub/sub connection per backend and the local fan-out of what it hears.

Channels: ``<ns>@<db>:wake:<queue>`` (a publish on that queue; claimers wake),
``<ns>@<db>:done:<task id>`` (a terminal result; waiters wake),
``<ns>@<db>:hand:<consumer>`` (messages a publish leased to that consumer's
idle claim, see ``RedisBroker.handoff``) and ``<ns>@<db>:broadcast`` (remote
control). The listener reads with
``get_message(timeout=...)`` on a connection without a read timeout (never
``async for listen()``), one bridge crossing per message. After a reconnect it
subscribes again and wakes every local waiter, since messages sent while it was
away are lost; waiters always re-check the data themselves, so a wake is only
a hint and a lost one costs at most a safety nap.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import redis.asyncio as aioredis
import trio

from stem._codec import decode_object
from stem._errors import BrokerUnavailable, DecodeError

from ._conn import TRANSIENT_OR_CANCELLED, Keys, aio

logger = logging.getLogger("stem.redis")

_IDLE_READ = 10.0  # seconds per get_message call on a quiet channel
_CONFIRM_WAIT = 2.0  # how long a subscribe waits for the server's confirmation


@attrs.define(eq=False)
class _Channel:
    refs: int = 0
    confirmed: trio.Event = attrs.field(factory=trio.Event)


@attrs.define(eq=False)
class Hub:
    """Pub/sub listener plus the registries of local waiters."""

    client: aioredis.Redis
    keys: Keys
    redacted: str
    #: on a cluster: the client of the next node to listen on (any node
    #: hears every PUBLISH), asked again at each reconnect
    pick: Callable[[], aioredis.Redis] | None = None
    #: on one Redis over plain TCP: makes the Trio-native pub/sub connection
    #: (``_native.NativePubSub``) used instead of redis-py's
    native: Callable[[], Any] | None = None
    broadcast_buffer: int = 256
    pubsub: Any = None
    channels: dict[str, _Channel] = attrs.field(factory=dict)
    queue_waiters: dict[str, set[trio.Event]] = attrs.field(factory=dict)
    result_waiters: dict[str, set[trio.Event]] = attrs.field(factory=dict)
    subscribers: set[trio.MemorySendChannel[dict[str, Any]]] = attrs.field(factory=set)
    #: handoff channel -> what takes its payloads (``RedisBroker._received``)
    handoffs: dict[str, Callable[[Any], None]] = attrs.field(factory=dict)
    dropped: int = 0
    reconnects: int = 0

    # ------------------------------------------------------------- waiters

    def wake_queue(self, queue: str) -> None:
        for event in self.queue_waiters.get(queue, ()):
            event.set()

    def wake_result(self, task_id: str) -> None:
        for event in self.result_waiters.get(task_id, ()):
            event.set()

    def wake_all(self) -> None:
        for group in (*self.queue_waiters.values(), *self.result_waiters.values()):
            for event in group:
                event.set()

    @staticmethod
    def add(registry: dict[str, set[trio.Event]], key: str, event: trio.Event) -> None:
        registry.setdefault(key, set()).add(event)

    @staticmethod
    def discard(
        registry: dict[str, set[trio.Event]], key: str, event: trio.Event
    ) -> None:
        group = registry.get(key)
        if group is not None:
            group.discard(event)
            if not group:
                del registry[key]

    # ------------------------------------------------------------- channels

    async def ensure(self, channel: str) -> None:
        """Subscribe to ``channel`` (counted) and wait, briefly, until the
        server confirms it, so a message sent after this returns is heard."""
        entry = self.channels.get(channel)
        if entry is None:
            entry = self.channels[channel] = _Channel()
            if self.pubsub is not None:
                try:
                    await self._io(self.pubsub.subscribe)(channel)
                except TRANSIENT_OR_CANCELLED:
                    pass  # the listener reconnects and subscribes again
        entry.refs += 1
        if self.pubsub is not None:
            with trio.move_on_after(_CONFIRM_WAIT):
                await entry.confirmed.wait()

    async def release(self, channel: str) -> None:
        """Drop one reference; unsubscribe when none is left."""
        entry = self.channels.get(channel)
        if entry is None:
            return
        entry.refs -= 1
        if entry.refs > 0:
            return
        del self.channels[channel]
        if self.pubsub is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(_CONFIRM_WAIT):
                try:
                    await self._io(self.pubsub.unsubscribe)(channel)
                except TRANSIENT_OR_CANCELLED:
                    pass

    @asynccontextmanager
    async def subscribe_broadcast(
        self,
    ) -> AsyncIterator[trio.MemoryReceiveChannel[dict[str, Any]]]:
        send, receive = trio.open_memory_channel[dict[str, Any]](self.broadcast_buffer)
        self.subscribers.add(send)
        try:
            async with receive:
                yield receive
        finally:
            self.subscribers.discard(send)
            send.close()

    # ------------------------------------------------------------- listener

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled, reconnecting with backoff."""
        self.channels.setdefault(self.keys.broadcast, _Channel()).refs += 1
        started = False
        pause = 0.05
        try:
            while True:
                try:
                    await self._connect()
                    pause = 0.05
                    if not started:
                        started = True
                        task_status.started()
                    else:
                        self.reconnects += 1
                    self.wake_all()
                    await self._listen()
                except TRANSIENT_OR_CANCELLED:
                    await trio.lowlevel.checkpoint()
                    await self._drop()
                    if not started:
                        raise BrokerUnavailable(
                            f"redis pub/sub at {self.redacted} is unavailable"
                        ) from None
                    self.wake_all()
                    await trio.sleep(pause)
                    pause = min(pause * 2, 1.0)
        finally:
            await self._drop()
            for send in list(self.subscribers):
                send.close()

    def _io(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        # The native connection's methods are Trio coroutines already.
        return fn if self.native is not None else aio(fn)

    async def _connect(self) -> None:
        if self.pick is not None:
            self.client = self.pick()
        self.pubsub = self.native() if self.native is not None else self.client.pubsub()
        for entry in self.channels.values():
            entry.confirmed = trio.Event()
        names = list(self.channels)
        await self._io(self.pubsub.subscribe)(*names)
        # Wait for the broadcast channel's confirmation (the others follow).
        while not self.channels[self.keys.broadcast].confirmed.is_set():
            message = await self._io(self.pubsub.get_message)(timeout=_IDLE_READ)
            if message is not None:
                self._dispatch(message)

    async def _listen(self) -> None:
        get = self._io(self.pubsub.get_message)
        while True:
            message = await get(timeout=_IDLE_READ)
            if message is not None:
                self._dispatch(message)

    async def _drop(self) -> None:
        pubsub, self.pubsub = self.pubsub, None
        if pubsub is None:
            return
        with trio.CancelScope(shield=True), trio.move_on_after(_CONFIRM_WAIT):
            try:
                await self._io(pubsub.aclose)()
            except TRANSIENT_OR_CANCELLED:
                pass

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        raw_channel = message.get("channel", b"")
        channel = (
            raw_channel.decode() if isinstance(raw_channel, bytes) else str(raw_channel)
        )
        if kind == "subscribe":
            entry = self.channels.get(channel)
            if entry is not None:
                entry.confirmed.set()
            return
        if kind != "message":
            return
        keys = self.keys
        if channel == keys.broadcast:
            self._fan_out(message.get("data", b""))
            return
        wake = keys.wake("")
        done = keys.done("")
        if channel.startswith(wake):
            self.wake_queue(channel[len(wake) :])
        elif channel.startswith(done):
            self.wake_result(channel[len(done) :])
        else:
            take = self.handoffs.get(channel)
            if take is not None:
                take(message.get("data", b""))

    def _fan_out(self, data: Any) -> None:
        try:
            decoded = decode_object(data, what="broadcast")
        except DecodeError as exc:
            logger.warning("dropped a broadcast that does not decode: %s", exc)
            return
        for send in list(self.subscribers):
            try:
                send.send_nowait(dict(decoded))
            except trio.WouldBlock:
                self.dropped += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.subscribers.discard(send)
