"""A worker's line to the BrokerActor: :class:`Outbox`.

Slots send outcomes without ever blocking: when the BrokerActor's inbox is
full, messages wait in order in a local backlog (bounded by the worker's
capacity, since each holds a delivery) that one task forwards. Settlements
come back as messages too: the BrokerActor calls :meth:`Outbox.settled`
from its own task, which only puts the delivery on a bounded channel; the
worker reads it in its own task, so the worker's state changes only there.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import attrs
import trio

from stem.contracts import Delivery

from ._actor import ActorRef
from ._broker import BrokerMessage

logger = logging.getLogger("stem.worker")


@attrs.define(eq=False)
class Outbox:
    """Messages to one BrokerActor, and the settlements it sends back."""

    broker: ActorRef[BrokerMessage]
    #: deliveries held at most by the worker (bounds the settlement channel)
    capacity: int
    _backlog: list[BrokerMessage] = attrs.field(factory=list, init=False)
    _ready: trio.Event = attrs.field(factory=trio.Event, init=False)
    _send: trio.MemorySendChannel[Delivery] = attrs.field(init=False)
    _receive: trio.MemoryReceiveChannel[Delivery] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        # Every settlement is one of the held deliveries: never more queued.
        self._send, self._receive = trio.open_memory_channel[Delivery](
            self.capacity + 1
        )

    def tell(self, msg: BrokerMessage) -> None:
        """Send without blocking, keeping order behind any backlog."""
        if not self._backlog:
            try:
                self.broker.tell_nowait(msg)
                return
            except trio.WouldBlock:
                pass
        self._backlog.append(msg)
        self._ready.set()

    async def forward_forever(self) -> None:
        """Forward the backlog in order (this task may wait; slots never do)."""
        while True:
            while self._backlog:
                await self.broker.tell(self._backlog[0])
                self._backlog.pop(0)
            self._ready = trio.Event()
            await self._ready.wait()

    def settled(self, delivery: Delivery) -> None:
        """``Finish.on_done``: called in the BrokerActor's task once
        ``delivery`` is settled. Only queues a message for the worker."""
        try:
            self._send.send_nowait(delivery)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            # The worker that held it is gone; nothing of it is left to free.
            logger.debug("settlement of %r arrived after its worker stopped", delivery)

    async def settlements(self) -> AsyncIterator[list[Delivery]]:
        """Settled deliveries, in batches, until :meth:`close`."""
        async for delivery in self._receive:
            batch = [delivery]
            while True:
                try:
                    batch.append(self._receive.receive_nowait())
                except trio.WouldBlock:
                    break
            yield batch

    def close(self) -> None:
        """Stop receiving settlements (later ones are dropped quietly)."""
        self._receive.close()
