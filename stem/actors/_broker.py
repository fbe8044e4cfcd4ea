"""The BrokerActor: the one writer to a backend.

Every write of the runtime goes through it as a message: publishes from
clients, results and acks from worker slots. It drains its inbox in batches and
turns a batch into a few backend calls in a fixed order:

1. store results (so an outcome is stored before its message is acked),
2. publish envelopes (a chain's next link before its parent is acked),
3. ack / nack / dead-letter the finished deliveries.

A write that fails for another reason is repeated message by message and
charged to the message it came from (``stem.actors._isolate``): one bad
message is dead-lettered or has its reply failed, never the batch.

A backend outage is retried with backoff; after the last try the publishers
are told (``BrokerUnavailable``) and unacked deliveries are left to their
leases, so nothing is lost, only delivered again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import attrs
import trio

from stem._errors import BrokerUnavailable
from stem.contracts import Backend

from ._actor import Actor
from ._brokermsg import (
    Action,
    BrokerMessage,
    Enqueue,
    Finish,
    FinishHook,
    Flush,
    Plan,
    Publish,
    StoreResults,
)
from ._enqueue import enqueue
from ._isolate import Isolation

logger = logging.getLogger("stem.broker")


def _superseded(fin: Finish) -> Finish:
    """The outcome of a second copy of a task whose terminal record came
    earlier in the same batch: its message is removed (acked or dropped,
    never retried nor dead-lettered) and hooks see no result."""
    action: Action = "ack" if fin.action == "ack" else "drop"
    if fin.action == "none":
        action = "none"
    return attrs.evolve(fin, action=action, result=None, envelope=None, dead=None)


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
        """Write one batch (see the module docstring for the order).

        One message never stops the others: a write of the whole batch that
        fails for a reason other than the backend being away is retried
        message by message (:mod:`stem.actors._isolate`); a finish whose
        writes still fail is dead-lettered with reason ``write-error``, a
        publish whose envelopes cannot be stored has its reply failed, and
        the rest of the batch is written and settled normally. Should the
        batch still crash, every finish in it is released to the worker (its
        message comes back after its lease) and every reply is failed before
        the actor restarts."""
        self._count("batches")
        enqueues = [msg for msg in batch if isinstance(msg, Enqueue)]
        if enqueues:
            # First, so that a result or revocation of the same task later in
            # the batch lands on the record they create.
            await enqueue(self, enqueues)
            batch = [msg for msg in batch if not isinstance(msg, Enqueue)]
        plan = Plan.of(batch)
        try:
            await self._write(plan)
        except BaseException as exc:
            if isinstance(exc, Exception):
                logger.exception(
                    "broker batch of %d messages failed; its deliveries are left "
                    "to their leases",
                    len(batch),
                )
                plan.fail_all(exc)
            plan.release_all()
            raise

    async def _write(self, plan: Plan) -> None:
        error: Exception | None = None
        isolate = Isolation(self)
        try:
            refused = await isolate.store_results(plan)
            if refused and plan.finishes:
                plan.finishes = [_already_final(f, refused) for f in plan.finishes]
            if plan.superseded:
                plan.finishes = [
                    _superseded(f) if f.delivery.receipt in plan.superseded else f
                    for f in plan.finishes
                ]
            if plan.finishes and self.hooks:
                await isolate.run_hooks(plan, self.hooks)
            await isolate.publish(plan)
            await isolate.release_keys(plan.releases)
        except BrokerUnavailable as exc:
            error = exc
        plan.answer(error, flushes=False)
        if error is None and plan.finishes:
            try:
                await isolate.settle(plan)
                await self._release_unique(plan.finishes)
            except BrokerUnavailable as exc:
                error = exc
        if error is not None:
            logger.error(
                "backend unavailable, deliveries left to their leases: %s", error
            )
        plan.release_all()
        plan.answer(None, publishes=False)

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
            if isinstance(key, str):
                try:
                    await self._retrying(
                        self.backend.results.release_unique, key, env.id
                    )
                except BrokerUnavailable:
                    raise
                except Exception:
                    logger.exception("could not release unique key %r", key)
                    continue
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


__all__ = [
    "Action",
    "BrokerActor",
    "BrokerActorStatistics",
    "BrokerMessage",
    "Enqueue",
    "Finish",
    "FinishHook",
    "Flush",
    "Publish",
    "StoreResults",
]
