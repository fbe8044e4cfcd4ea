"""Deliveries a publish handed to an idle waiting claim (the Redis and
Postgres brokers' handoff), kept until a claim of that consumer returns
them, and the events of the claims waiting for them."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import attrs
import trio

from ._clock import now
from .contracts import Delivery

logger = logging.getLogger("stem.handoff")


@attrs.define(eq=False)
class Handed:
    """Per consumer: the deliveries handed to it (already leased to it by
    the publish) and the events of its waiting claims."""

    _held: dict[str, list[Delivery]] = attrs.field(factory=dict)
    _waiters: dict[str, set[trio.Event]] = attrs.field(factory=dict)

    def add(self, consumer: str, deliveries: Iterable[Delivery]) -> None:
        """Keep ``deliveries`` for ``consumer``'s claim and wake it."""
        self._held.setdefault(consumer, []).extend(deliveries)
        for event in self._waiters.get(consumer, ()):
            event.set()

    def take(self, consumer: str, queues: Sequence[str], limit: int) -> list[Delivery]:
        """Up to ``limit`` of ``consumer``'s deliveries on ``queues``. One
        whose lease has run out is dropped, never returned: another claim
        may hold its message by now, and if not, its lease brings it back."""
        held = self._held.get(consumer)
        if not held:
            return []
        at = now()
        taken: list[Delivery] = []
        kept: list[Delivery] = []
        for delivery in held:
            if delivery.lease_until <= at:
                logger.debug("a handed delivery's lease ran out before a claim")
            elif delivery.queue in queues and len(taken) < limit:
                taken.append(delivery)
            else:
                kept.append(delivery)
        if kept:
            self._held[consumer] = kept
        else:
            del self._held[consumer]
        return taken

    def holds(self, consumer: str) -> bool:
        return bool(self._held.get(consumer))

    def watch(self, consumer: str, event: trio.Event) -> None:
        """Set ``event`` when a delivery for ``consumer`` arrives (until
        :meth:`unwatch`; plain calls, not a context manager: a claim loop
        runs this for every pass)."""
        self._waiters.setdefault(consumer, set()).add(event)

    def unwatch(self, consumer: str, event: trio.Event) -> None:
        waiters = self._waiters.get(consumer)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                del self._waiters[consumer]
