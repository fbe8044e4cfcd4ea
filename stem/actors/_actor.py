"""Actors and their addresses: `Actor`, `ActorRef`, tell and ask."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar

import attrs
import trio

from ._mailbox import Mailbox, MailboxStatistics, Reply

__all__ = ["Actor", "ActorRef", "ActorStatistics", "AskTimeout"]

M = TypeVar("M")
T = TypeVar("T")

#: Seconds after a batch during which a lingering actor counts as busy.
LINGER_WHILE_BUSY = 0.002

logger = logging.getLogger("stem.actors")


class AskTimeout(TimeoutError):
    """An ``ask`` got no reply in time (the actor may still handle the message)."""


@attrs.frozen
class ActorRef(Generic[M]):
    """The address of an actor.

    It points at the actor's `Mailbox`, not at one incarnation, so it stays valid
    across restarts. Refs compare equal when they address the same mailbox.
    """

    _mailbox: Mailbox[M] = attrs.field(alias="mailbox")

    @property
    def name(self) -> str:
        """The actor's name."""
        return self._mailbox.name

    async def tell(self, msg: M) -> None:
        """Send ``msg``, waiting while the inbox is full (backpressure).

        Atomic with respect to cancellation: either queued or not.
        """
        await self._mailbox.put(msg)

    def tell_nowait(self, msg: M) -> None:
        """Send ``msg`` or raise `MailboxFull` at once."""
        self._mailbox.put_nowait(msg)

    async def ask(self, make: Callable[[Reply[T]], M], *, timeout: float = 10.0) -> T:
        """Send ``make(reply)`` with a fresh reply slot and wait for the answer.

        Raises `AskTimeout` if sending plus answering take longer than
        ``timeout`` seconds, or the exception the actor failed the reply with.
        On cancellation the message may or may not have been queued.
        """
        reply: Reply[T] = Reply()
        msg = make(reply)
        with trio.move_on_after(timeout):
            await self._mailbox.put(msg)
            return await reply.wait()
        raise AskTimeout(f"ask to actor {self.name!r} got no reply within {timeout} s")

    def statistics(self) -> MailboxStatistics:
        """Return a snapshot of the addressed mailbox."""
        return self._mailbox.statistics()


@attrs.frozen(kw_only=True)
class ActorStatistics:
    """A snapshot of one actor incarnation."""

    name: str
    messages_handled: int
    batches: int
    restarts: int | None
    mailbox: MailboxStatistics | None


@attrs.define
class _Kernel:
    """Book-keeping the kernel keeps on every actor instance."""

    mailbox: Mailbox[Any] | None = None
    messages_handled: int = 0
    batches: int = 0
    restarts: int | None = None
    unhandled: list[Any] = attrs.Factory(list)


def _kernel(actor: Actor[Any]) -> _Kernel:
    try:
        return actor._actor_kernel
    except AttributeError:
        kernel = _Kernel()
        object.__setattr__(actor, "_actor_kernel", kernel)
        return kernel


def fail_replies(msg: object, exc: Exception) -> None:
    """Fail every unanswered `Reply` held in an attribute of ``msg``."""
    cls = type(msg)
    if attrs.has(cls):
        values = [getattr(msg, a.name) for a in attrs.fields(cls)]
    else:
        values = [getattr(msg, "reply", None)]
    for value in values:
        if isinstance(value, Reply) and not value.done:
            value.fail(exc)


class Actor(Generic[M]):
    """Base class of actors; subclasses are ``@attrs.define`` classes.

    Implement `handle` (one message, usually a ``match``), or `handle_batch`, or
    override `run` entirely. Class attributes tune the default loop:
    ``batch_size`` (most messages taken per wake-up) and ``stop_timeout``
    (seconds `on_stop` may take during shutdown).

    Failure: if `handle` raises an `Exception` for a message that carries an
    unanswered `Reply` (in any attrs field), the default `handle_batch` fails
    that reply with the same exception object, then lets it propagate so the
    actor crashes and its supervisor sees it. The failing message is dropped;
    the rest of its batch is put back at the front of the mailbox for the next
    incarnation. The same happens to the rest of a batch on cancellation.
    """

    __slots__ = ("_actor_kernel",)
    _actor_kernel: _Kernel

    batch_size: ClassVar[int] = 100
    #: let other ready tasks run once before draining a batch (see get_batch)
    batch_linger: ClassVar[bool] = False  # applies while busy, see _serve
    stop_timeout: ClassVar[float] = 5.0

    async def on_start(self) -> None:
        """Hook run before the actor reports ready; raising here fails its start."""

    async def on_stop(self) -> None:
        """Hook run when `run` exits for any reason (shielded, ``stop_timeout``)."""

    async def handle(self, msg: M) -> None:
        """Handle one message."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement handle() or override run()"
        )

    async def handle_batch(self, batch: list[M]) -> None:
        """Handle messages taken together; the default calls `handle` on each."""
        kernel = _kernel(self)
        for index, msg in enumerate(batch):
            try:
                await self.handle(msg)
            except BaseException as exc:
                if isinstance(exc, Exception):
                    fail_replies(msg, exc)
                kernel.unhandled = batch[index + 1 :]
                raise
            kernel.messages_handled += 1

    async def run(
        self,
        mailbox: Mailbox[M],
        *,
        task_status: trio.TaskStatus[ActorRef[M]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run the actor on ``mailbox`` until cancelled, crashed or the mailbox closes.

        Calls `on_start`, then ``task_status.started(ref)``, then handles
        batches of messages. Returns normally once the mailbox is closed and
        drained. `on_stop` runs on every exit after a successful `on_start`.
        """
        kernel = _kernel(self)
        kernel.mailbox = mailbox
        await self.on_start()
        try:
            task_status.started(ActorRef(mailbox))
            await self._serve(mailbox)
        except BaseException:
            with trio.move_on_after(self.stop_timeout, shield=True):
                try:
                    await self.on_stop()
                except Exception:
                    logger.exception("on_stop of actor %r failed", mailbox.name)
            raise
        with trio.move_on_after(self.stop_timeout, shield=True):
            await self.on_stop()

    async def _serve(self, mailbox: Mailbox[M]) -> None:
        """Handle batches from ``mailbox`` until it is closed and drained."""
        kernel = _kernel(self)
        kernel.mailbox = mailbox
        custom_batches = type(self).handle_batch is not Actor.handle_batch
        # A lingering actor waits one scheduler pass for more messages only
        # while it is busy (its last batch ended within LINGER_WHILE_BUSY):
        # an idle one answers the first message at once (pickup latency).
        finished = -math.inf
        while True:
            linger = (
                self.batch_linger and trio.current_time() - finished < LINGER_WHILE_BUSY
            )
            try:
                batch = await mailbox.get_batch(self.batch_size, linger=linger)
            except trio.EndOfChannel:
                return
            kernel.unhandled = []
            try:
                await self.handle_batch(batch)
            finally:
                if kernel.unhandled:
                    mailbox._requeue_front(kernel.unhandled)
                    kernel.unhandled = []
            kernel.batches += 1
            if custom_batches:
                kernel.messages_handled += len(batch)
            finished = trio.current_time()

    def statistics(self) -> ActorStatistics:
        """Return a snapshot of this incarnation's counters."""
        kernel = _kernel(self)
        mailbox = kernel.mailbox
        return ActorStatistics(
            name=mailbox.name if mailbox is not None else type(self).__name__,
            messages_handled=kernel.messages_handled,
            batches=kernel.batches,
            restarts=kernel.restarts,
            mailbox=mailbox.statistics() if mailbox is not None else None,
        )


def set_restarts(actor: Actor[Any], restarts: int) -> None:
    """Record on ``actor`` how many times its supervisor restarted the child."""
    _kernel(actor).restarts = restarts
