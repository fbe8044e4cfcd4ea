"""The EventBus actor: fans lifecycle signals out to subscribers.

``emit`` is synchronous and never blocks: each subscriber has a bounded
buffer; when it is full the event is dropped for that subscriber and counted.
Each handler runs in its own task in the bus's nursery, so a slow or raising
handler never reaches the emitter (a worker slot).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from stem._signals import SIGNALS, Event, Signals, Subscription

logger = logging.getLogger("stem.events")


@attrs.frozen(kw_only=True)
class SubscriptionStatistics:
    """One subscriber: ``buffered`` events wait for it now."""

    signal: str
    handler: str
    buffer: int
    buffered: int
    delivered: int
    dropped: int
    errors: int


@attrs.frozen(kw_only=True)
class EventBusStatistics:
    """Totals over all subscribers; ``dropped`` counts events a full buffer
    refused, ``handler_errors`` handlers and filters that raised."""

    subscribers: int
    emitted: int
    delivered: int
    dropped: int
    handler_errors: int
    subscriptions: tuple[SubscriptionStatistics, ...] = ()


@attrs.define(eq=False)
class _Outlet:
    sub: Subscription
    send: trio.MemorySendChannel[Event]
    receive: trio.MemoryReceiveChannel[Event]
    dropped: int = 0
    delivered: int = 0
    errors: int = 0
    busy: bool = False

    @property
    def idle(self) -> bool:
        return not self.busy and self.receive.statistics().current_buffer_used == 0


@attrs.define(eq=False)
class EventBus:
    """Fan-out of signals; run it with ``await nursery.start(bus.run)``."""

    signals: Signals = attrs.field(factory=Signals)
    _outlets: dict[str, list[_Outlet]] = attrs.field(factory=dict, init=False)
    _by_sub: dict[int, _Outlet] = attrs.field(factory=dict, init=False)
    _nursery: trio.Nursery | None = attrs.field(default=None, init=False)
    _emitted: int = attrs.field(default=0, init=False)
    _delivered: int = attrs.field(default=0, init=False)
    _dropped: int = attrs.field(default=0, init=False)
    _errors: int = attrs.field(default=0, init=False)

    # -- emitting (sync, cheap) -------------------------------------------

    def wants(self, signal: str) -> bool:
        """Whether anyone listens to ``signal`` (build payloads only then)."""
        return bool(self._outlets.get(signal))

    def emit(self, event: Event) -> None:
        """Hand ``event`` to every subscriber of its signal without blocking."""
        outlets = self._outlets.get(event.signal)
        if not outlets:
            return
        self._emitted += 1
        for outlet in outlets:
            flt = outlet.sub.filter
            if flt is not None:
                try:
                    if not flt(event):
                        continue
                except Exception:
                    self._errors += 1
                    outlet.errors += 1
                    logger.exception("signal filter for %s raised", event.signal)
                    continue
            try:
                outlet.send.send_nowait(event)
            except trio.WouldBlock:
                outlet.dropped += 1
                self._dropped += 1
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                pass

    # -- running ----------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[EventBus] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.signals.watch_subscriptions(self._on_change)
            try:
                for sub in list(self.signals.subscriptions()):
                    self._attach(sub)
                task_status.started(self)
                await trio.sleep_forever()
            finally:
                self.signals.unwatch_subscriptions(self._on_change)
                self._nursery = None
                for outlets in self._outlets.values():
                    for outlet in outlets:
                        outlet.send.close()
                self._outlets.clear()
                self._by_sub.clear()

    def _on_change(self, sub: Subscription, added: bool) -> None:
        if added:
            self._attach(sub)
        else:
            self._detach(sub)

    def _attach(self, sub: Subscription) -> None:
        if self._nursery is None or id(sub) in self._by_sub:
            return
        send, receive = trio.open_memory_channel[Event](sub.buffer)
        outlet = _Outlet(sub=sub, send=send, receive=receive)
        self._by_sub[id(sub)] = outlet
        self._outlets.setdefault(sub.signal, []).append(outlet)
        self._nursery.start_soon(self._deliver, outlet, name=f"signal:{sub.signal}")

    def _detach(self, sub: Subscription) -> None:
        outlet = self._by_sub.pop(id(sub), None)
        if outlet is None:
            return
        self._outlets[sub.signal].remove(outlet)
        outlet.send.close()

    async def _deliver(self, outlet: _Outlet) -> None:
        handler: Any = outlet.sub.handler
        async with outlet.receive:
            async for event in outlet.receive:
                outlet.busy = True
                try:
                    if outlet.sub.is_async:
                        await handler(event)
                    else:
                        returned = handler(event)
                        if inspect.isawaitable(returned):  # e.g. a lambda to async
                            await returned
                    self._delivered += 1
                    outlet.delivered += 1
                except Exception:
                    self._errors += 1
                    outlet.errors += 1
                    logger.exception(
                        "signal handler %r for %s raised", handler, event.signal
                    )
                finally:
                    outlet.busy = False

    async def drain(self, timeout: float = 2.0) -> bool:
        """Wait (up to ``timeout`` seconds) until every connected handler has
        processed the events already buffered for it; True if they all did.
        A clean client exit calls this so the last events are not lost."""
        with trio.move_on_after(timeout):
            # A short poll of a condition spread over every subscriber, run
            # once at client exit and bounded by ``timeout``.
            while not all(outlet.idle for outlet in self._by_sub.values()):  # noqa: ASYNC110
                await trio.sleep(0.005)
            return True
        return False

    @asynccontextmanager
    async def stream(
        self, signals: Iterable[str] | None = None, *, buffer: int = 1000
    ) -> AsyncIterator[trio.MemoryReceiveChannel[Event]]:
        """Receive events of ``signals`` (all when None) on a bounded channel;
        overflow is dropped and counted like any subscriber's."""
        names = list(SIGNALS) if signals is None else list(signals)
        for name in names:
            if name not in SIGNALS:
                raise ValueError(f"no signal named {name!r}")
        send, receive = trio.open_memory_channel[Event](buffer)
        outlets = []
        for name in names:
            sub = Subscription(signal=name, handler=_noop, buffer=buffer)
            outlet = _Outlet(sub=sub, send=send, receive=receive)
            self._outlets.setdefault(name, []).append(outlet)
            outlets.append(outlet)
        try:
            yield receive
        finally:
            for outlet in outlets:
                lst = self._outlets.get(outlet.sub.signal, [])
                if outlet in lst:
                    lst.remove(outlet)
            send.close()
            receive.close()

    def statistics(self) -> EventBusStatistics:
        outlets = [o for v in self._outlets.values() for o in v]
        return EventBusStatistics(
            subscribers=len(outlets),
            emitted=self._emitted,
            delivered=self._delivered,
            dropped=self._dropped,
            handler_errors=self._errors,
            subscriptions=tuple(
                SubscriptionStatistics(
                    signal=o.sub.signal,
                    handler=_describe(o.sub.handler),
                    buffer=o.sub.buffer,
                    buffered=o.send.statistics().current_buffer_used,
                    delivered=o.delivered,
                    dropped=o.dropped,
                    errors=o.errors,
                )
                for o in outlets
            ),
        )


def _describe(handler: Any) -> str:
    name = getattr(handler, "__qualname__", None) or type(handler).__qualname__
    module = getattr(handler, "__module__", None)
    return f"{module}.{name}" if module else str(name)


def _noop(event: Event) -> None:
    del event
