"""The EventRelay actor: copies this node's lifecycle events to the
backend's event log, so ``client.events()`` and ``stem events`` in other
processes see them.

It relays only while someone listens. Every ``presence_interval`` seconds it
asks the log how many listeners are live (one small read); with none, it
holds no subscription on the event bus, so the bus's ``wants()`` stays
False and workers do not even build the events' payloads. With listeners,
it subscribes through a bounded buffer (a full buffer drops and counts, never
blocks a worker) and appends in batches: one write per batch, not per event.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import attrs
import trio

from stem._errors import BrokerUnavailable
from stem._eventcodec import RELAYED_SIGNALS, encode_event
from stem._ids import new_id
from stem._signals import Event
from stem.contracts import EventStore

from ._actor import Actor, ActorRef
from ._eventbus import EventBus
from ._mailbox import Mailbox

logger = logging.getLogger("stem.events")


def node_origin() -> str:
    """``hostname:pid:id``: the node an event came from."""
    return f"{socket.gethostname()}:{os.getpid()}:{new_id()[-8:]}"


@attrs.frozen(kw_only=True)
class EventRelayStatistics:
    """``relayed`` events written, ``failed`` ones a backend outage lost,
    ``listening``: whether it relays now."""

    relayed: int
    failed: int
    unencodable: int
    listening: bool


@attrs.define(eq=False)
class EventRelay(Actor[Any]):
    """A supervised child (``ChildSpec("event-relay", ...)``); it takes no
    messages, its mailbox is the kernel's convention."""

    bus: EventBus
    store: EventStore
    origin: str = attrs.field(factory=node_origin)
    presence_interval: float = 5.0
    relay_batch: int = 500
    buffer: int = 10_000
    _relayed: int = attrs.field(default=0, init=False)
    _failed: int = attrs.field(default=0, init=False)
    _unencodable: int = attrs.field(default=0, init=False)
    _listening: bool = attrs.field(default=False, init=False)

    async def run(
        self,
        mailbox: Mailbox[Any],
        *,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        ref = ActorRef(mailbox)
        started = False
        while True:
            if await self._someone_listens():
                # Started once subscribed: the node's first events (a worker
                # coming online) are relayed.
                await self._relay_while_listened(ref, None if started else task_status)
            else:
                if not started:
                    task_status.started(ref)
                await trio.sleep(self.presence_interval)
            started = True

    async def _someone_listens(self) -> bool:
        try:
            return await self.store.listeners() > 0
        except BrokerUnavailable as exc:
            logger.debug("event log unavailable: %s", exc)
            return False

    async def _relay_while_listened(
        self, ref: ActorRef[Any], task_status: trio.TaskStatus[Any] | None
    ) -> None:
        async with self.bus.stream(RELAYED_SIGNALS, buffer=self.buffer) as events:
            self._listening = True
            if task_status is not None:
                task_status.started(ref)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, events)
                    # Presence lives in the backend (other processes): poll.
                    await trio.sleep(self.presence_interval)
                    while await self._someone_listens():  # noqa: ASYNC110
                        await trio.sleep(self.presence_interval)
                    nursery.cancel_scope.cancel()
            finally:
                self._listening = False

    async def _pump(self, events: trio.MemoryReceiveChannel[Event]) -> None:
        while True:
            batch = [await events.receive()]
            while len(batch) < self.relay_batch:
                try:
                    batch.append(events.receive_nowait())
                except trio.WouldBlock:
                    break
            await self._append(batch)

    async def _append(self, batch: list[Event]) -> None:
        bodies: list[bytes] = []
        for event in batch:
            try:
                bodies.append(encode_event(event, origin=self.origin))
            except Exception:
                self._unencodable += 1
                logger.exception("event %s could not be encoded", event.signal)
        if not bodies:
            return
        try:
            await self.store.append(bodies)
        except BrokerUnavailable as exc:
            self._failed += len(bodies)
            logger.warning("%d event(s) not relayed: %s", len(bodies), exc)
            return
        self._relayed += len(bodies)

    def relay_statistics(self) -> EventRelayStatistics:
        return EventRelayStatistics(
            relayed=self._relayed,
            failed=self._failed,
            unencodable=self._unencodable,
            listening=self._listening,
        )
