"""A worker's line to the BrokerActor: :class:`Outbox`.

Slots send outcomes without ever blocking: when the BrokerActor's inbox is
full, messages wait in order in a local backlog (bounded by the worker's
capacity, since each holds a delivery) that one task forwards. Settlements
come back as messages too: the BrokerActor calls :meth:`Outbox.settled`
from its own task, which only records the delivery; the worker takes the
settlements in its own tasks (before it counts its capacity, renews leases or
reports statistics), so the worker's state changes only there, without a task
switch per settlement.
"""

from __future__ import annotations

import attrs
import trio

from stem.contracts import Delivery

from ._actor import ActorRef
from ._broker import BrokerMessage


@attrs.define(eq=False)
class Outbox:
    """Messages to one BrokerActor, and the settlements it sends back."""

    broker: ActorRef[BrokerMessage]
    _backlog: list[BrokerMessage] = attrs.field(factory=list, init=False)
    _ready: trio.Event = attrs.field(factory=trio.Event, init=False)
    #: settled deliveries not yet taken by the worker (at most one per held
    #: delivery: bounded by the worker's capacity)
    _settled: list[Delivery] = attrs.field(factory=list, init=False)
    _changed: trio.Event = attrs.field(factory=trio.Event, init=False)

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
        ``delivery`` is settled. Only records the message for the worker,
        which takes it in its own task (:meth:`take_settled`)."""
        self._settled.append(delivery)
        self._changed.set()

    def take_settled(self) -> list[Delivery]:
        """The settlements that arrived since the last call."""
        taken, self._settled = self._settled, []
        return taken

    def poke(self) -> None:
        """Wake :meth:`wait_settled` without a settlement (capacity grew)."""
        self._changed.set()

    async def wait_settled(self) -> None:
        """Return once a settlement is waiting (at once if one is) or
        :meth:`poke` is called."""
        if self._settled:
            await trio.lowlevel.checkpoint()
            return
        self._changed = trio.Event()
        await self._changed.wait()
