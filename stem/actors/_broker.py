"""The BrokerActor: the one writer to a backend.

Every write of the runtime goes through it as a message: publishes from
clients, results and acks from worker slots. It drains its inbox in batches and
turns a batch into a few backend calls in a fixed order:

1. store results (so an outcome is stored before its message is acked),
2. publish envelopes (a chain's next link before its parent is acked),
3. ack / nack / dead-letter the finished deliveries.

A backend outage is retried with backoff; after the last try the publishers
are told (``BrokerUnavailable``) and unacked deliveries are left to their
leases, so nothing is lost, only delivered again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal

import attrs
import trio

from stem._envelope import Envelope
from stem._errors import BrokerUnavailable
from stem._result import TaskResult
from stem.contracts import Backend, DeadLetter, Delivery

from ._actor import Actor
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


BrokerMessage = Publish | StoreResults | Finish | Flush

#: Called with every batch of finished deliveries after their results are
#: stored and before anything is published or acked; returns envelopes to
#: publish in the same batch (a chain's next link, a chord's callback). A hook
#: that raises leaves the batch unacked: its messages come back after their
#: lease and the hook sees them again. Hooks filter on ``finish.delivery``'s
#: envelope meta themselves and must be cheap for finishes they ignore.
FinishHook = Callable[[Sequence[Finish]], Awaitable[Sequence[Envelope]]]


def _already_final(fin: Finish, refused: set[str]) -> Finish:
    """A retry or dead letter for a task whose terminal result was already
    stored (a redelivered copy finished first) only removes the message:
    requeueing would run a finished task again, and a dead letter would
    contradict its result. Hooks see it without a result."""
    result = fin.result
    if result is None or result.task_id not in refused:
        return fin
    if fin.action not in ("retry", "dead"):
        return fin
    return attrs.evolve(fin, action="drop", result=None, envelope=None, dead=None)


@attrs.frozen(kw_only=True)
class BrokerActorStatistics:
    batches: int
    published: int
    results_stored: int
    acked: int
    retried: int
    dropped: int
    dead_lettered: int
    backend_errors: int


@attrs.define(eq=False)
class BrokerActor(Actor[BrokerMessage]):
    backend: Backend
    hooks: Sequence[FinishHook] = ()
    retry_attempts: int = 5
    retry_initial: float = 0.05
    retry_max: float = 2.0
    _stats: dict[str, int] = attrs.field(factory=dict, init=False)

    batch_size = 500
    batch_linger = True

    def _count(self, key: str, n: int = 1) -> None:
        self._stats[key] = self._stats.get(key, 0) + n

    async def handle_batch(self, batch: list[BrokerMessage]) -> None:
        self._count("batches")
        # The last record per task wins (RUNNING then SUCCEEDED in one batch
        # stores only SUCCEEDED); grouped by TTL only after coalescing, so a
        # task's records can never be written out of order.
        latest: dict[str, tuple[TaskResult, float | None]] = {}
        envelopes: list[Envelope] = []
        publishes: list[Publish | StoreResults] = []
        finishes: list[Finish] = []
        flushes: list[Flush] = []
        releases: list[tuple[str, str]] = []
        for msg in batch:
            match msg:
                case Publish():
                    publishes.append(msg)
                    for result in msg.results:
                        latest[result.task_id] = (result, msg.ttl)
                    envelopes.extend(msg.envelopes)
                case StoreResults():
                    if msg.reply is not None:
                        publishes.append(msg)
                    releases.extend(msg.release)
                    for result in msg.results:
                        latest[result.task_id] = (result, msg.ttl)
                case Finish():
                    finishes.append(msg)
                    if msg.result is not None:
                        latest[msg.result.task_id] = (msg.result, msg.ttl)
                    envelopes.extend(msg.follow_ups)
                case Flush():
                    flushes.append(msg)
        results: dict[float | None, dict[str, TaskResult]] = {}
        for task_id, (result, ttl) in latest.items():
            results.setdefault(ttl, {})[task_id] = result
        error: Exception | None = None
        combined = getattr(self.backend, "store_and_publish", None)
        if (
            combined is not None
            and not finishes
            and not releases
            and envelopes
            and len(results) <= 1
        ):
            # A pure enqueue batch: QUEUED records and messages in one round
            # trip where the backend offers it (same order, same effects).
            ttl, by_id = next(iter(results.items()), (None, {}))
            try:
                await self._retrying(
                    combined, list(by_id.values()), ttl=ttl, envelopes=envelopes
                )
                self._count("results_stored", len(by_id))
                self._count("published", len(envelopes))
            except BrokerUnavailable as exc:
                error = exc
            self._answer(publishes, flushes, error)
            return
        try:
            refused: set[str] = set()
            for ttl, by_id in results.items():
                flags = await self._retrying(
                    self.backend.results.set_state, list(by_id.values()), ttl=ttl
                )
                self._count("results_stored", len(by_id))
                if isinstance(flags, list):
                    refused.update(
                        task_id
                        for task_id, stored in zip(by_id, flags, strict=False)
                        if not stored
                    )
            if refused and finishes:
                finishes = [_already_final(f, refused) for f in finishes]
            if finishes and self.hooks:
                try:
                    for hook in self.hooks:
                        envelopes.extend(await hook(finishes))
                except BrokerUnavailable:
                    raise
                except Exception:
                    logger.exception("a finish hook failed; the batch is left unacked")
                    finishes = [attrs.evolve(f, action="none") for f in finishes]
            if envelopes:
                await self._retrying(self.backend.broker.publish, envelopes)
                self._count("published", len(envelopes))
            for key, task_id in releases:
                await self._retrying(self.backend.results.release_unique, key, task_id)
                self._count("unique_released")
        except BrokerUnavailable as exc:
            error = exc
        self._answer(publishes, [], error)
        if error is None and finishes:
            try:
                await self._settle(finishes)
                await self._release_unique(finishes)
            except BrokerUnavailable as exc:
                error = exc
        if error is not None:
            logger.error(
                "backend unavailable, deliveries left to their leases: %s", error
            )
        for fin in finishes:
            if fin.on_done is not None:
                try:
                    fin.on_done(fin.delivery)
                except Exception:
                    logger.exception("on_done callback failed")
        self._answer([], flushes, None)

    @staticmethod
    def _answer(
        publishes: Sequence[Publish | StoreResults],
        flushes: Sequence[Flush],
        error: Exception | None,
    ) -> None:
        for pub in publishes:
            if pub.reply is not None and not pub.reply.done:
                if error is None:
                    pub.reply.send(None)
                else:
                    pub.reply.fail(error)
        for flush in flushes:
            if not flush.reply.done:
                flush.reply.send(None)

    async def _settle(self, finishes: Sequence[Finish]) -> None:
        broker = self.backend.broker
        acks = [f.delivery for f in finishes if f.action == "ack"]
        if acks:
            await self._retrying(broker.ack, acks)
            self._count("acked", len(acks))
        for fin in finishes:
            if fin.action == "retry":
                await self._retrying(
                    broker.nack,
                    fin.delivery,
                    requeue=True,
                    delay=fin.delay,
                    envelope=fin.envelope,
                )
                self._count("retried")
            elif fin.action == "drop":
                await self._retrying(broker.nack, fin.delivery, requeue=False)
                self._count("dropped")
            elif fin.action == "dead":
                assert fin.dead is not None
                await self._retrying(broker.dead_letter, fin.delivery, fin.dead)
                self._count("dead_lettered")

    async def _release_unique(self, finishes: Sequence[Finish]) -> None:
        """Free the unique keys of tasks that reached a terminal state (a
        duplicate enqueued from now on is a new task). Retries keep theirs."""
        for fin in finishes:
            result = fin.result
            if result is None or fin.action == "none" or not result.state.is_terminal:
                continue
            env = fin.delivery.envelope
            if env is None or not env.meta:
                continue
            key = env.meta.get("unique_key")
            if key is not None:
                await self._retrying(self.backend.results.release_unique, key, env.id)
                self._count("unique_released")

    async def _retrying(
        self, fn: Callable[..., Awaitable[object]], *args: object, **kw: object
    ) -> object:
        delay = self.retry_initial
        for attempt in range(1, self.retry_attempts + 1):
            try:
                return await fn(*args, **kw)
            except BrokerUnavailable:
                self._count("backend_errors")
                if attempt == self.retry_attempts:
                    raise
                await trio.sleep(delay)
                delay = min(delay * 2, self.retry_max)
        raise AssertionError("unreachable")

    def broker_statistics(self) -> BrokerActorStatistics:
        s = self._stats
        return BrokerActorStatistics(
            batches=s.get("batches", 0),
            published=s.get("published", 0),
            results_stored=s.get("results_stored", 0),
            acked=s.get("acked", 0),
            retried=s.get("retried", 0),
            dropped=s.get("dropped", 0),
            dead_lettered=s.get("dead_lettered", 0),
            backend_errors=s.get("backend_errors", 0),
        )
