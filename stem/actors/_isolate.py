"""Per-message isolation for the BrokerActor's batch writes.

The BrokerActor writes a batch in a few calls (all results, all envelopes,
all acks). When such a call fails for a reason other than the backend being
away (``BrokerUnavailable``, which leaves the batch to its leases), the
failure belongs to one message, not to the batch: a record the backend
refuses, an envelope one column cannot hold, a finish hook that cannot
follow one message's meta. :class:`Isolation` then repeats the step message
by message, charges each failure to the message it came from
(:class:`~stem.actors._brokermsg.Plan`), and lets the rest of the batch go
on. A finish that cannot be written is dead-lettered with reason
``write-error`` (the error says which step failed), its envelope kept when
the backend accepts it, else its body (cut to ``MAX_RAW_BYTES``).

Costs nothing when nothing fails: the batch calls are made as before, and
the per-message calls only follow a failed batch call.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from stem._clock import now
from stem._codec import as_bytes, clip_raw, encode_envelope
from stem._errors import BrokerUnavailable
from stem._result import ErrorInfo, TaskResult
from stem._states import TaskState
from stem.contracts import DeadLetter

from ._brokermsg import Finish, FinishHook, Plan, Publish

if TYPE_CHECKING:
    from stem.contracts import Backend

logger = logging.getLogger("stem.broker")

#: The dead-letter reason of a message whose outcome could not be written.
WRITE_ERROR = "write-error"


class Writer(Protocol):
    """What :class:`Isolation` needs of the BrokerActor (its backend, its
    retry loop for outages and its counters)."""

    @property
    def backend(self) -> Backend: ...

    async def _retrying(
        self, fn: Callable[..., Awaitable[Any]], *args: Any, **kw: Any
    ) -> Any: ...

    def _count(self, key: str, n: int = 1) -> None: ...


@attrs.define(eq=False)
class Isolation:
    """The steps of one batch, each falling back to one call per message."""

    actor: Writer

    async def _call(
        self, fn: Callable[..., Awaitable[Any]], *args: Any, **kw: Any
    ) -> Any:
        return await self.actor._retrying(fn, *args, **kw)

    async def store_results(self, plan: Plan) -> set[str]:
        """Store every record; returns the task ids whose terminal record was
        already there (the write was refused)."""
        set_state = self.actor.backend.results.set_state
        refused: set[str] = set()
        for ttl, by_id in plan.results.items():
            records = list(by_id.values())
            try:
                flags = await self._call(set_state, records, ttl=ttl)
            except BrokerUnavailable:
                raise
            except Exception as exc:
                logger.warning(
                    "storing %d results failed (%s); storing them one by one",
                    len(records),
                    _brief(exc),
                )
                flags = []
                for record in records:
                    try:
                        one = await self._call(set_state, [record], ttl=ttl)
                    except BrokerUnavailable:
                        raise
                    except Exception as exc:
                        _log_failure("store the result of", record.task_id, exc)
                        plan.charge(record.task_id, "store its result", exc)
                        one = [True]
                    flags.extend(one if isinstance(one, list) else [True])
            self.actor._count("results_stored", len(records))
            if isinstance(flags, list):
                refused.update(
                    task_id
                    for task_id, stored in zip(by_id, flags, strict=False)
                    if not stored
                )
        return refused

    async def run_hooks(self, plan: Plan, hooks: Sequence[FinishHook]) -> None:
        """Run every finish hook on the batch; a hook that fails on the
        batch runs once per finish, and a finish it fails on is poisoned."""
        for hook in hooks:
            live = [f for f in plan.finishes if f.delivery.receipt not in plan.poisoned]
            if not live:
                return
            try:
                plan.add_envelopes(None, await hook(live))
                continue
            except BrokerUnavailable:
                raise
            except Exception as exc:
                logger.warning(
                    "a finish hook failed on a batch of %d (%s); running it "
                    "once per finish",
                    len(live),
                    _brief(exc),
                )
            for fin in live:
                try:
                    plan.add_envelopes(fin, await hook([fin]))
                except BrokerUnavailable:
                    raise
                except Exception as exc:
                    _log_failure("run the finish hook of", fin.delivery.task_id, exc)
                    plan.poison(fin, "run its finish hook", exc)

    async def publish(self, plan: Plan) -> None:
        """Publish every live envelope; a batch the backend refuses is
        published origin by origin (a Publish's envelopes stay all or
        nothing), and what still fails is charged to its origin."""
        publish = self.actor.backend.broker.publish
        groups = plan.live_groups()
        envelopes = [env for _, envs in groups for env in envs]
        if not envelopes:
            return
        try:
            await self._call(publish, envelopes)
            self.actor._count("published", len(envelopes))
            return
        except BrokerUnavailable:
            raise
        except Exception as exc:
            logger.warning(
                "publishing %d envelopes failed (%s); publishing them per message",
                len(envelopes),
                _brief(exc),
            )
        for origin, envs in groups:
            singles = [envs] if origin is not None else [[env] for env in envs]
            for chunk in singles:
                try:
                    await self._call(publish, chunk)
                    self.actor._count("published", len(chunk))
                except BrokerUnavailable:
                    raise
                except Exception as exc:
                    _log_failure("publish", chunk[0].id, exc)
                    if isinstance(origin, Publish):
                        plan.fail(origin, exc)
                    elif isinstance(origin, Finish):
                        plan.poison(origin, "publish its follow-up messages", exc)
                    # A hook's batch output that fails alone is lost: logged.

    async def release_keys(self, releases: Sequence[tuple[str, str]]) -> None:
        release = self.actor.backend.results.release_unique
        for key, task_id in releases:
            try:
                await self._call(release, key, task_id)
            except BrokerUnavailable:
                raise
            except Exception as exc:
                _log_failure("release the unique key of", task_id, exc)
                continue
            self.actor._count("unique_released")

    async def settle(self, plan: Plan) -> None:
        """Ack, retry, drop or dead-letter every finish as it asks; a finish
        that was poisoned, or whose settlement fails, is dead-lettered."""
        broker = self.actor.backend.broker
        finishes = plan.finishes
        acks = [
            f.delivery
            for f in finishes
            if f.action == "ack" and f.delivery.receipt not in plan.poisoned
        ]
        if acks:
            try:
                await self._call(broker.ack, acks)
            except BrokerUnavailable:
                raise
            except Exception as exc:
                logger.warning("acking %d failed (%s); one by one", len(acks), exc)
                for delivery in acks:
                    try:
                        await self._call(broker.ack, [delivery])
                    except BrokerUnavailable:
                        raise
                    except Exception as exc:
                        # Left to its lease: it comes back and its stored
                        # terminal result turns it into a plain removal.
                        _log_failure("ack", delivery.task_id, exc)
            self.actor._count("acked", len(acks))
        for fin in finishes:
            poisoned = plan.poisoned.get(fin.delivery.receipt)
            if poisoned is not None:
                await self.bury(fin, *poisoned)
                continue
            try:
                await self._settle_one(fin)
            except BrokerUnavailable:
                raise
            except Exception as exc:
                _log_failure(f"settle ({fin.action})", fin.delivery.task_id, exc)
                await self.bury(fin, f"settle it ({fin.action})", exc)

    async def _settle_one(self, fin: Finish) -> None:
        broker = self.actor.backend.broker
        if fin.action == "retry":
            await self._call(
                broker.nack,
                fin.delivery,
                requeue=True,
                delay=fin.delay,
                envelope=fin.envelope,
            )
            self.actor._count("retried")
        elif fin.action == "drop":
            await self._call(broker.nack, fin.delivery, requeue=False)
            self.actor._count("dropped")
        elif fin.action == "dead":
            assert fin.dead is not None
            await self._call(broker.dead_letter, fin.delivery, fin.dead)
            self.actor._count("dead_lettered")

    async def bury(self, fin: Finish, what: str, exc: Exception) -> None:
        """Dead-letter ``fin``'s delivery with reason ``write-error`` and a
        FAILED record: first with its envelope (so it can be replayed), then,
        if the backend refuses that too, with its body only."""
        delivery = fin.delivery
        env = delivery.envelope
        at = now()
        info = ErrorInfo(
            type=ErrorInfo.from_exception(exc).type,
            message=f"could not {what}: {_brief(exc)}",
        )
        entry = DeadLetter(
            task_id=delivery.task_id or (env.id if env is not None else ""),
            name=env.name if env is not None else "",
            queue=delivery.queue,
            reason=WRITE_ERROR,
            error=info,
            attempts=env.attempt if env is not None else delivery.delivery_count,
            dead_at=at,
            envelope=env,
            raw=delivery.raw,
        )
        broker = self.actor.backend.broker
        try:
            filed = await self._call(broker.dead_letter, delivery, entry)
        except BrokerUnavailable:
            raise
        except Exception:
            bare = attrs.evolve(entry, envelope=None, raw=_body_of(fin))
            try:
                filed = await self._call(broker.dead_letter, delivery, bare)
            except BrokerUnavailable:
                raise
            except Exception as last:
                logger.error(  # noqa: TRY400 (one line; the cause is in it)
                    "could not dead-letter %r either (%s); it is left to its lease",
                    delivery.task_id,
                    _brief(last),
                )
                return
        if not filed:
            return  # the lease was lost: the message is someone else's now
        self.actor._count("dead_lettered")
        if env is None:
            return
        record = TaskResult(
            task_id=env.id,
            state=TaskState.FAILED,
            attempt=env.attempt,
            name=env.name,
            queue=env.queue,
            error=info,
            updated_at=at,
            meta={"reason": WRITE_ERROR},
        )
        try:
            await self._call(
                self.actor.backend.results.set_state, [record], ttl=fin.ttl
            )
        except BrokerUnavailable:
            raise
        except Exception as err:
            _log_failure("store the failure of", env.id, err)


def _body_of(fin: Finish) -> bytes:
    """What a bare dead letter keeps of the message (bounded)."""
    delivery = fin.delivery
    if delivery.raw is not None:
        return clip_raw(delivery.raw)
    if delivery.envelope is None:
        return b""
    try:
        return clip_raw(encode_envelope(delivery.envelope))
    except Exception:
        return clip_raw(as_bytes(repr(delivery.envelope)))


def _brief(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:300] + "..."


def _log_failure(what: str, task_id: str, exc: BaseException) -> None:
    logger.error("could not %s task %r: %s", what, task_id, _brief(exc))
