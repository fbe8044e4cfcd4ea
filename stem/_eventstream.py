"""``client.events()``: this process's lifecycle events merged with the ones
other processes relay through the backend's event log.

While the stream is open it registers a listener on the log (renewed every
``ttl / 3`` seconds), which tells every relay to start copying its node's
events there; it reads the log from its newest record on, decodes each
record totally (a record that does not decode is skipped and counted), and
leaves out the records this process relayed itself (the local bus already
delivered them). A full buffer drops events and counts them, as the event
bus does.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import attrs
import trio

from ._errors import BrokerUnavailable, DecodeError
from ._eventcodec import decode_event
from ._ids import new_id
from ._node import ClientNode
from ._signals import SIGNALS, Event
from .actors import ChildSpec
from .actors._eventbus import EventBus
from .actors._eventrelay import EventRelay
from .contracts import Backend, EventStore

logger = logging.getLogger("stem.events")

#: How long a listener counts without renewal (seconds).
LISTENER_TTL = 30.0
#: Records read per call.
READ_BATCH = 500


@attrs.define(eq=False)
class RemoteCounts:
    """What the remote side of one stream saw."""

    received: int = 0
    undecodable: int = 0
    dropped: int = 0


def shared_event_log(backend: Backend) -> EventStore | None:
    """``backend.events`` when processes can share it (None on the
    in-memory backend, or a backend without an event log)."""
    if not backend.capabilities.cross_process:
        return None
    store = getattr(backend, "events", None)
    return store if isinstance(store, EventStore) else None


async def start_relay(
    node: ClientNode, bus: EventBus, store: EventStore | None, origin: str
) -> None:
    """Start the node's EventRelay under its supervisor, once."""
    if store is None or node.has_child("event-relay"):
        return
    await node.start_child(
        ChildSpec(
            "event-relay", lambda: EventRelay(bus=bus, store=store, origin=origin)
        )
    )


def check_signals(signals: Iterable[str] | None) -> list[str]:
    """The signal names asked for (all when None); ValueError for an
    unknown one."""
    names = list(SIGNALS) if signals is None else list(signals)
    for name in names:
        if name not in SIGNALS:
            raise ValueError(f"no signal named {name!r}")
    return names


async def keep_listening(store: EventStore, listener: str, ttl: float) -> None:
    """Renew ``listener`` every ``ttl / 3`` seconds until cancelled (an
    outage is logged and retried at the next renewal)."""
    while True:
        try:
            await store.listen(listener, ttl=ttl)
        except BrokerUnavailable as exc:
            logger.warning("could not renew the event listener: %s", exc)
        await trio.sleep(ttl / 3)


async def stop_listening(store: EventStore, listener: str) -> None:
    """Remove ``listener`` (shielded, bounded; its ttl covers a failure)."""
    with trio.CancelScope(shield=True), trio.move_on_after(5):
        try:
            await store.unlisten(listener)
        except BrokerUnavailable:
            pass


async def pump_remote(
    store: EventStore,
    send: trio.MemorySendChannel[Event],
    *,
    after: int,
    wanted: frozenset[str],
    own_origin: str,
    counts: RemoteCounts,
) -> None:
    """Read the log after cursor ``after`` forever, sending the decoded
    events of ``wanted`` signals from other nodes to ``send``."""
    while True:
        try:
            records = await store.read(after, limit=READ_BATCH, wait=1.0)
        except BrokerUnavailable as exc:
            logger.warning("event log unavailable: %s", exc)
            await trio.sleep(1.0)
            continue
        for record in records:
            after = record.cursor
            try:
                event = decode_event(record.body)
            except DecodeError as exc:
                counts.undecodable += 1
                logger.warning("skipped an event record %d: %s", record.cursor, exc)
                continue
            if event.signal not in wanted or event.origin == own_origin:
                continue
            counts.received += 1
            try:
                send.send_nowait(event)
            except trio.WouldBlock:
                counts.dropped += 1
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return


@asynccontextmanager
async def open_event_stream(
    bus: EventBus,
    store: EventStore | None,
    *,
    signals: Iterable[str] | None,
    buffer: int,
    own_origin: str,
) -> AsyncIterator[trio.MemoryReceiveChannel[Event]]:
    """Events of ``signals`` from this process and, when ``store`` is given,
    from every process relaying to it, on one bounded channel."""
    names = check_signals(signals)
    if store is None:
        async with bus.stream(names, buffer=buffer) as local:
            yield local
        return
    send, receive = trio.open_memory_channel[Event](buffer)
    listener = f"{own_origin}:stream:{new_id()[-8:]}"
    counts = RemoteCounts()
    async with trio.open_nursery() as nursery:
        await store.listen(listener, ttl=LISTENER_TTL)
        after = await store.last_cursor()
        try:
            async with bus.stream(names, buffer=buffer) as local:
                nursery.start_soon(_forward, local, send.clone())
                nursery.start_soon(keep_listening, store, listener, LISTENER_TTL)
                nursery.start_soon(
                    lambda: pump_remote(
                        store,
                        send,
                        after=after,
                        wanted=frozenset(names),
                        own_origin=own_origin,
                        counts=counts,
                    )
                )
                yield receive
        finally:
            nursery.cancel_scope.cancel()
            await stop_listening(store, listener)
            send.close()
            receive.close()


async def _forward(
    local: trio.MemoryReceiveChannel[Event], send: trio.MemorySendChannel[Event]
) -> None:
    async with send:
        async for event in local:
            try:
                send.send_nowait(event)
            except trio.WouldBlock:
                pass
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return
