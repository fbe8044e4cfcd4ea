"""The deliveries a worker holds, and the renewal of their leases.

:class:`HeldDeliveries` is the one owner of "what this worker holds": the
claimed deliveries by receipt and the lease length each should keep. The
Worker adds what it claims and removes what is settled; :meth:`renew_forever`
(a task of the worker's nursery) renews every lease a third of the way into
it, in batches, straight on the backend: it never waits behind the
BrokerActor's inbox, so a flood of outcomes cannot let a running task's lease
run out (see docs/architecture.md, "Writes outside the BrokerActor").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Container, Iterable, Iterator

import attrs
import trio

from stem._clock import now
from stem._errors import BrokerUnavailable
from stem.contracts import Broker, Delivery

logger = logging.getLogger("stem.worker")


@attrs.define(eq=False)
class HeldDeliveries:
    """Deliveries held by one worker, by receipt, with their lease lengths."""

    broker: Broker
    default_lease: float
    _held: dict[str, Delivery] = attrs.field(factory=dict, init=False)
    _lease_len: dict[str, float] = attrs.field(factory=dict, init=False)
    _changed: trio.Event = attrs.field(factory=trio.Event, init=False)

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, receipt: object) -> bool:
        return receipt in self._held

    def __iter__(self) -> Iterator[Delivery]:
        return iter(list(self._held.values()))

    def add(self, deliveries: Iterable[Delivery], lease: float) -> None:
        """Hold ``deliveries``, claimed with leases of ``lease`` seconds."""
        for delivery in deliveries:
            self._held[delivery.receipt] = delivery
            self._lease_len[delivery.receipt] = lease
        self._changed.set()

    def keep_for(self, receipt: str, lease: float) -> None:
        """Renew ``receipt``'s lease to ``lease`` seconds from now on (a task
        whose visibility timeout is longer than the claim's)."""
        if receipt in self._held and self._lease_len.get(receipt) != lease:
            self._lease_len[receipt] = lease
            self._changed.set()

    def discard(self, receipt: str) -> None:
        self._held.pop(receipt, None)
        self._lease_len.pop(receipt, None)

    def take_all(self) -> list[Delivery]:
        """Stop holding everything; returns what was held."""
        held = list(self._held.values())
        self._held.clear()
        self._lease_len.clear()
        return held

    # -- renewal -------------------------------------------------------------

    async def renew_forever(
        self,
        before_pass: Callable[[], object],
        settling: Container[str] = frozenset(),
    ) -> None:
        """Renew leases a third of the way into them, until cancelled.
        ``before_pass`` runs before each look at what is held (the worker
        forgets what was settled meanwhile). ``settling`` holds the receipts
        whose outcome is on its way to the backend: they are still renewed
        (a slow write must not let them run again), and a refusal for one of
        them means its ack landed first, not a lost lease."""
        while True:
            before_pass()
            if not self._held:
                self._changed = trio.Event()
                await self._changed.wait()
                continue
            at = now()
            due: list[Delivery] = []
            next_check = float("inf")
            for receipt, delivery in list(self._held.items()):
                length = self._lease_len.get(receipt, self.default_lease)
                renew_at = delivery.lease_until - length * 2 / 3
                if renew_at <= at:
                    due.append(delivery)
                else:
                    next_check = min(next_check, renew_at)
            if due:
                await self._extend(due, settling)
                continue
            self._changed = trio.Event()
            with trio.move_on_after(max(next_check - at, 0.01)):
                await self._changed.wait()

    async def _extend(self, due: list[Delivery], settling: Container[str]) -> None:
        by_len: dict[float, list[Delivery]] = {}
        for delivery in due:
            length = self._lease_len.get(delivery.receipt, self.default_lease)
            by_len.setdefault(length, []).append(delivery)
        for length, group in by_len.items():
            try:
                flags = await self.broker.extend(group, length)
            except BrokerUnavailable as exc:
                logger.warning("lease renewal failed: %s", exc)
                await trio.sleep(min(1.0, length / 10))
                return
            at = now()
            for delivery, held in zip(group, flags, strict=True):
                if delivery.receipt not in self._held:
                    continue
                if held:
                    until = at + length
                elif delivery.receipt in settling:
                    # Settled between the look and the extend: nothing lost.
                    until = float("inf")
                else:
                    logger.warning(
                        "lost the lease of %r; it may run again elsewhere",
                        delivery.task_id,
                    )
                    until = float("inf")
                self._held[delivery.receipt] = attrs.evolve(delivery, lease_until=until)
