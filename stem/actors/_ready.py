"""The queue of claimed deliveries waiting for a worker slot."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import attrs
import trio

from stem.contracts import Delivery

#: After this many takes without waiting, a slot yields once (fairness).
_YIELD_EVERY = 32


@attrs.define(eq=False)
class ReadyQueue:
    """Deliveries waiting for a slot, oldest first.

    The fetcher puts a whole claimed batch at once; slots take from the front.
    Which slot Trio wakes first does not matter (Trio shuffles wake-ups within
    a scheduling batch): whoever runs takes the oldest delivery, so tasks start
    in claim order. A slot that finds work ready takes it without a scheduler
    pass (yielding every ``_YIELD_EVERY`` takes), which is what lets one
    worker run tens of thousands of short tasks a second. Bounded by the
    worker's capacity: the fetcher never claims more than it can hold.
    """

    _items: deque[Delivery] = attrs.Factory(deque)
    _lot: trio.lowlevel.ParkingLot = attrs.Factory(trio.lowlevel.ParkingLot)
    _closed: bool = False
    _streak: int = 0

    def put_many(self, deliveries: Iterable[Delivery]) -> None:
        before = len(self._items)
        self._items.extend(deliveries)
        added = len(self._items) - before
        if added:
            self._lot.unpark(count=added)

    async def get(self) -> Delivery:
        """The oldest delivery, waiting for one; EndOfChannel once closed."""
        if self._items and self._streak < _YIELD_EVERY:
            self._streak += 1
            return self._items.popleft()
        self._streak = 0
        await trio.lowlevel.checkpoint()
        while not self._items:
            if self._closed:
                raise trio.EndOfChannel
            await self._lot.park()
        return self._items.popleft()

    def close(self) -> list[Delivery]:
        """Refuse further gets (waiting slots end) and return what was waiting."""
        self._closed = True
        left = list(self._items)
        self._items.clear()
        self._lot.unpark_all()
        return left

    def __len__(self) -> int:
        return len(self._items)
