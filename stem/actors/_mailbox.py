"""Bounded inboxes and one-shot reply slots: the plumbing under every actor."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

import attrs
import trio

__all__ = ["Mailbox", "MailboxFull", "MailboxStatistics", "Reply", "reply_errors"]

M = TypeVar("M")
T = TypeVar("T")


class MailboxFull(trio.WouldBlock):
    """Raised by `Mailbox.put_nowait` when the inbox holds ``capacity`` messages."""


class Reply(Generic[T]):
    """A one-shot slot an actor fills to answer an ``ask``.

    `send` and `fail` are synchronous and never block; only the first of them
    counts, a second call raises `RuntimeError`. `wait` is for the asker.
    """

    __slots__ = ("_done", "_error", "_event", "_value")

    def __init__(self) -> None:
        self._event = trio.Event()
        self._done = False
        self._value: T | None = None
        self._error: Exception | None = None

    @property
    def done(self) -> bool:
        """True once `send` or `fail` was called."""
        return self._done

    def _settle(self) -> None:
        if self._done:
            raise RuntimeError("this Reply was already answered")
        self._done = True

    def send(self, value: T) -> None:
        """Answer with ``value``; raises `RuntimeError` if already answered."""
        self._settle()
        self._value = value
        self._event.set()

    def fail(self, exc: Exception) -> None:
        """Answer with an error the asker will see raised."""
        self._settle()
        self._error = exc
        self._event.set()

    async def wait(self) -> T:
        """Wait for the answer: return the value or raise the failure.

        Cancellation just stops waiting; the slot may still be answered later.
        """
        await self._event.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]  # T may include None


@contextmanager
def reply_errors(reply: Reply[T]) -> Iterator[None]:
    """Fail ``reply`` with any `Exception` raised in the block, then re-raise it.

    The asker sees the error at once and the actor still crashes, so its
    supervisor sees the error too. A reply already answered is left alone.
    """
    try:
        yield
    except Exception as exc:
        if not reply.done:
            reply.fail(exc)
        raise


@attrs.frozen(kw_only=True)
class MailboxStatistics:
    """A snapshot of a `Mailbox`."""

    name: str
    capacity: int
    size: int
    total_put: int
    total_got: int
    tasks_waiting_put: int
    tasks_waiting_get: int
    closed: bool


def check_capacity(value: int) -> None:
    """Reject a capacity that is not an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"mailbox capacity must be an int >= 1 (inboxes are never unbounded), "
            f"got {value!r}"
        )


class Mailbox(Generic[M]):
    """A bounded inbox on `trio.open_memory_channel`.

    It belongs to whoever created it (usually a `Supervisor`), not to the actor
    reading it, so messages queued while an actor restarts reach the next
    incarnation. Messages a crashed actor had taken in a batch but not handled
    are put back at the front (see `Actor.run`); that front buffer can hold up
    to one batch beyond ``capacity``.
    """

    def __init__(self, capacity: int = 1000, *, name: str = "mailbox") -> None:
        check_capacity(capacity)
        self._name = name
        self._capacity = capacity
        self._send, self._receive = trio.open_memory_channel[M](capacity)
        self._front: deque[M] = deque()
        self._total_put = 0
        self._total_got = 0
        self._closed = False

    def __repr__(self) -> str:
        return f"<Mailbox {self._name!r} capacity={self._capacity}>"

    @property
    def name(self) -> str:
        """The name of the actor this inbox addresses."""
        return self._name

    @property
    def capacity(self) -> int:
        """How many messages fit before `put` blocks."""
        return self._capacity

    @property
    def closed(self) -> bool:
        """True once `close` was called."""
        return self._closed

    async def put(self, msg: M) -> None:
        """Queue ``msg``, waiting while the inbox is full (backpressure).

        Atomic with respect to cancellation: either queued or not. Raises
        `trio.ClosedResourceError` after `close`.
        """
        await self._send.send(msg)
        self._total_put += 1

    def put_nowait(self, msg: M) -> None:
        """Queue ``msg`` or raise `MailboxFull` at once."""
        try:
            self._send.send_nowait(msg)
        except trio.WouldBlock:
            raise MailboxFull(
                f"mailbox {self._name!r} is full ({self._capacity} messages)"
            ) from None
        self._total_put += 1

    async def get(self) -> M:
        """Take the next message, waiting for one.

        Atomic with respect to cancellation. Raises `trio.EndOfChannel` once the
        mailbox is closed and empty.
        """
        if self._front:
            await trio.lowlevel.checkpoint()
        if self._front:
            msg = self._front.popleft()
        else:
            msg = await self._receive.receive()
        self._total_got += 1
        return msg

    def get_nowait(self) -> M:
        """Take the next message or raise `trio.WouldBlock`."""
        msg = self._front.popleft() if self._front else self._receive.receive_nowait()
        self._total_got += 1
        return msg

    async def get_batch(self, max_items: int, *, linger: bool = False) -> list[M]:
        """Wait for at least one message, then take up to ``max_items`` without waiting.

        With ``linger``, after the first message it lets every other ready task
        run once (one scheduler pass, shielded from cancellation) before
        draining, so messages sent in that pass join the batch: fewer, larger
        batches for actors whose per-batch cost dominates.

        Atomic with respect to cancellation: if cancelled, nothing was taken.
        Raises `trio.EndOfChannel` once the mailbox is closed and empty.
        """
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items!r}")
        if self._front:
            await trio.lowlevel.checkpoint()
        batch: list[M] = []
        while self._front and len(batch) < max_items:
            batch.append(self._front.popleft())
        if not batch:
            batch.append(await self._receive.receive())
            if linger and max_items > 1:
                await trio.lowlevel.cancel_shielded_checkpoint()
        while len(batch) < max_items:
            try:
                batch.append(self._receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        self._total_got += len(batch)
        return batch

    def close(self) -> None:
        """Refuse new messages; readers drain what is queued, then see EndOfChannel.

        Idempotent. Tasks blocked in `put` get `trio.ClosedResourceError`.
        """
        self._closed = True
        self._send.close()

    def statistics(self) -> MailboxStatistics:
        """Return a frozen snapshot of this mailbox."""
        stats = self._send.statistics()
        return MailboxStatistics(
            name=self._name,
            capacity=self._capacity,
            size=len(self._front) + stats.current_buffer_used,
            total_put=self._total_put,
            total_got=self._total_got,
            tasks_waiting_put=stats.tasks_waiting_send,
            tasks_waiting_get=stats.tasks_waiting_receive,
            closed=self.closed,
        )

    def _requeue_front(self, msgs: Iterable[M]) -> None:
        """Put taken-but-unhandled messages back, ahead of everything queued."""
        items = list(msgs)
        self._front.extendleft(reversed(items))
        self._total_got -= len(items)
