"""The BrokerActor's messages, and :class:`Plan`: one batch of them sorted
into what to write (results, envelopes, settlements) and whom to answer."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal

import attrs

from stem._envelope import Envelope
from stem._result import TaskResult
from stem.contracts import DeadLetter, Delivery

from ._mailbox import Reply

logger = logging.getLogger("stem.broker")

Action = Literal["ack", "retry", "drop", "dead", "none"]


@attrs.frozen(kw_only=True, eq=False)
class Publish:
    """Store ``results`` (e.g. QUEUED) then publish ``envelopes``."""

    envelopes: tuple[Envelope, ...]
    results: tuple[TaskResult, ...] = ()
    ttl: float | None = None
    reply: Reply[None] | None = None


@attrs.frozen(kw_only=True, eq=False)
class Enqueue:
    """Enqueue by task id: ``results`` holds one QUEUED record per envelope,
    in order, and an envelope is published only if its task had no live
    record (``CombinedPublish.create_and_publish``). ``reply`` gets one flag
    per envelope: True if queued now, False if that task id was known."""

    envelopes: tuple[Envelope, ...]
    results: tuple[TaskResult, ...]
    ttl: float | None = None
    reply: Reply[list[bool]] | None = None

    def __attrs_post_init__(self) -> None:
        if len(self.envelopes) != len(self.results) or any(
            env.id != res.task_id
            for env, res in zip(self.envelopes, self.results, strict=True)
        ):
            raise ValueError("Enqueue.results must be one record per envelope")


@attrs.frozen(kw_only=True, eq=False)
class StoreResults:
    """Store results (e.g. RUNNING), then free the unique keys in
    ``release`` (``(key, task_id)`` pairs); ``reply``, when given, is
    answered once stored (or failed with BrokerUnavailable)."""

    results: tuple[TaskResult, ...]
    ttl: float | None = None
    release: tuple[tuple[str, str], ...] = ()
    reply: Reply[None] | None = None


@attrs.frozen(kw_only=True, eq=False)
class Finish:
    """A delivery is done: store ``result``, publish ``follow_ups``, then
    settle the delivery as ``action`` says."""

    delivery: Delivery
    action: Action
    result: TaskResult | None = None
    ttl: float | None = None
    envelope: Envelope | None = None  # retry: the next attempt
    delay: float = 0.0  # retry: seconds before it is visible
    dead: DeadLetter | None = None  # dead: the entry
    follow_ups: tuple[Envelope, ...] = ()
    on_done: Callable[[Delivery], None] | None = None


@attrs.frozen(kw_only=True, eq=False)
class Flush:
    """Answered once everything sent before it is written."""

    reply: Reply[None]


BrokerMessage = Enqueue | Publish | StoreResults | Finish | Flush

#: Called with every batch of finished deliveries after their results are
#: stored and before anything is published or acked; returns envelopes to
#: publish in the same batch (a chain's next link, a chord's callback). A hook
#: that raises BrokerUnavailable leaves the batch unacked (its messages come
#: back after their lease and the hook sees them again); any other error
#: makes the BrokerActor call it again once per finish, and a finish it still
#: fails on is dead-lettered (``write-error``), so a hook must be idempotent.
#: Hooks filter on ``finish.delivery``'s envelope meta themselves and must be
#: cheap for finishes they ignore.
FinishHook = Callable[[Sequence[Finish]], Awaitable[Sequence[Envelope]]]


#: Where an envelope to publish came from: a client's Publish, a Finish (a
#: hook's follow-ups for that finish), or None (a hook's output for a batch).
Origin = Publish | Finish | None


@attrs.define(eq=False)
class Plan:
    """One batch of BrokerActor messages, sorted.

    The last record per task wins (RUNNING then SUCCEEDED in one batch stores
    only SUCCEEDED), but a terminal record is final (a second copy's later
    outcome is dropped); records are grouped by TTL only after coalescing, so
    a task's records are never written out of order. Envelopes keep their
    origin, so a write that fails is charged to the message it came from:
    a failed Publish has its reply failed (:meth:`fail`), a failed Finish is
    *poisoned* (:meth:`poison`: dead-lettered instead of settled as asked).
    """

    results: dict[float | None, dict[str, TaskResult]] = attrs.Factory(dict)
    groups: list[tuple[Origin, list[Envelope]]] = attrs.Factory(list)
    publishes: list[Publish | StoreResults] = attrs.Factory(list)
    finishes: list[Finish] = attrs.Factory(list)
    flushes: list[Flush] = attrs.Factory(list)
    releases: list[tuple[str, str]] = attrs.Factory(list)
    #: id() of a Publish/StoreResults -> the error its reply gets
    failed: dict[int, Exception] = attrs.Factory(dict)
    #: receipt of a poisoned finish -> (what could not be done, the error)
    poisoned: dict[str, tuple[str, Exception]] = attrs.Factory(dict)
    #: receipts of finishes whose result came after a terminal record of
    #: their task in this batch (a second copy's outcome): they only remove
    #: their message (see ``superseded``)
    superseded: set[str] = attrs.Factory(set)
    _released: bool = False

    @classmethod
    def of(cls, batch: Sequence[BrokerMessage]) -> Plan:
        """Sort ``batch`` (``Enqueue`` messages are the actor's own step and
        are left out). A task's terminal record is final within the batch as
        in the store: a later record of that task is dropped, and a finish
        that carried it is marked superseded."""
        plan = cls()
        latest: dict[str, tuple[TaskResult, float | None, object]] = {}

        def keep(result: TaskResult, ttl: float | None, msg: object) -> bool:
            kept = latest.get(result.task_id)
            if kept is not None and kept[0].state.is_terminal:
                return False
            latest[result.task_id] = (result, ttl, msg)
            return True

        for msg in batch:
            match msg:
                case Publish():
                    plan.publishes.append(msg)
                    for result in msg.results:
                        keep(result, msg.ttl, msg)
                    if msg.envelopes:
                        plan.groups.append((msg, list(msg.envelopes)))
                case StoreResults():
                    if msg.reply is not None:
                        plan.publishes.append(msg)
                    plan.releases.extend(msg.release)
                    for result in msg.results:
                        keep(result, msg.ttl, msg)
                case Finish():
                    plan.finishes.append(msg)
                    if msg.result is not None and not keep(msg.result, msg.ttl, msg):
                        plan.superseded.add(msg.delivery.receipt)
                    elif msg.follow_ups:
                        plan.groups.append((msg, list(msg.follow_ups)))
                case Flush():
                    plan.flushes.append(msg)
        for task_id, (result, ttl, _) in latest.items():
            plan.results.setdefault(ttl, {})[task_id] = result
        return plan

    @property
    def envelopes(self) -> list[Envelope]:
        """Every envelope to publish, in order (without those of failed
        publishes and poisoned finishes)."""
        return [env for _, envs in self.live_groups() for env in envs]

    def live_groups(self) -> list[tuple[Origin, list[Envelope]]]:
        return [
            (origin, envs)
            for origin, envs in self.groups
            if not (isinstance(origin, Publish) and id(origin) in self.failed)
            and not (
                isinstance(origin, Finish) and origin.delivery.receipt in self.poisoned
            )
        ]

    def add_envelopes(self, origin: Origin, envelopes: Sequence[Envelope]) -> None:
        if envelopes:
            self.groups.append((origin, list(envelopes)))

    def fail(self, msg: Publish | StoreResults, exc: Exception) -> None:
        """``msg`` could not be written: its reply gets ``exc`` and its
        envelopes are not published."""
        self.failed.setdefault(id(msg), exc)

    def poison(self, fin: Finish, what: str, exc: Exception) -> None:
        """``fin`` could not be written (``what`` failed): it is
        dead-lettered instead of settled as asked."""
        self.poisoned.setdefault(fin.delivery.receipt, (what, exc))

    def charge(self, task_id: str, what: str, exc: Exception) -> None:
        """The record of ``task_id`` could not be stored: fail or poison
        every message of this batch that carried it."""
        for msg in self.publishes:
            if any(r.task_id == task_id for r in msg.results):
                self.fail(msg, exc)
        for origin, _ in self.groups:
            if isinstance(origin, Publish) and any(
                r.task_id == task_id for r in origin.results
            ):
                self.fail(origin, exc)
        for fin in self.finishes:
            if fin.result is not None and fin.result.task_id == task_id:
                self.poison(fin, what, exc)

    def answer(
        self,
        error: Exception | None,
        *,
        publishes: bool = True,
        flushes: bool = True,
    ) -> None:
        """Answer the replies still open: a failed message's own error, else
        ``error`` (None: success)."""
        if publishes:
            for pub in self.publishes:
                if pub.reply is not None and not pub.reply.done:
                    own = self.failed.get(id(pub), error)
                    if own is None:
                        pub.reply.send(None)
                    else:
                        pub.reply.fail(own)
        if flushes:
            for flush in self.flushes:
                if not flush.reply.done:
                    flush.reply.send(None)

    def fail_all(self, exc: Exception) -> None:
        """Fail every reply still open (the batch crashed)."""
        for pub in self.publishes:
            if pub.reply is not None and not pub.reply.done:
                pub.reply.fail(exc)
        for flush in self.flushes:
            if not flush.reply.done:
                flush.reply.fail(exc)

    def release_all(self) -> None:
        """Tell each finish's worker it is done with the delivery (settled,
        or left to its lease), once."""
        if self._released:
            return
        self._released = True
        for fin in self.finishes:
            if fin.on_done is not None:
                try:
                    fin.on_done(fin.delivery)
                except Exception:
                    logger.exception("on_done callback failed")
