"""The BrokerActor's first step: ``Enqueue`` messages, one task id queued once.

An enqueue is a *create*: each message is published only if its task had no
live record, so a second enqueue of an id that is queued, running, waiting
for a retry, or finished within its result TTL queues nothing. The backend
decides it atomically (``CombinedPublish.create_and_publish``: records and
messages in one step, across processes); a backend without it gets
``results.create`` then ``broker.publish``, and takes the records back if the
publish fails.

One message never stops the others: a batch call that fails for another
reason than the backend being away is repeated message by message, and a
message that still fails has its reply failed with that error (as the
BrokerActor's other steps do, :mod:`stem.actors._isolate`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

import trio

from stem._envelope import Envelope
from stem._errors import BrokerUnavailable
from stem._result import TaskResult
from stem.contracts import Backend, CombinedPublish

from ._brokermsg import Enqueue

if TYPE_CHECKING:
    from ._isolate import Writer

logger = logging.getLogger("stem.broker")


async def enqueue(actor: Writer, messages: Sequence[Enqueue]) -> None:
    """Create-and-publish ``messages`` (one backend call per ttl) and answer
    each with its flags, or with the error that kept it from being stored."""
    groups: dict[float | None, list[Enqueue]] = {}
    for msg in messages:
        groups.setdefault(msg.ttl, []).append(msg)
    answers: dict[int, list[bool] | Exception] = {}
    try:
        for ttl, members in groups.items():
            await _group(actor, members, ttl, answers)
    except BrokerUnavailable as exc:
        for msg in messages:
            answers.setdefault(id(msg), exc)
    for msg in messages:
        reply = msg.reply
        if reply is None or reply.done:
            continue
        answer = answers.get(id(msg))
        if isinstance(answer, list):
            reply.send(answer)
        else:
            reply.fail(answer or BrokerUnavailable("the enqueue was not stored"))


async def _group(
    actor: Writer,
    members: Sequence[Enqueue],
    ttl: float | None,
    answers: dict[int, list[bool] | Exception],
) -> None:
    results = [r for msg in members for r in msg.results]
    envelopes = [e for msg in members for e in msg.envelopes]
    try:
        flags = await create_and_publish(actor, results, envelopes, ttl=ttl)
    except BrokerUnavailable:
        raise
    except Exception as exc:
        logger.warning(
            "enqueueing %d messages failed (%s); one enqueue at a time",
            len(envelopes),
            exc,
        )
        for msg in members:
            try:
                answers[id(msg)] = await create_and_publish(
                    actor, msg.results, msg.envelopes, ttl=ttl
                )
            except BrokerUnavailable:
                raise
            except Exception as exc:
                logger.warning("enqueue of %r failed: %s", msg.envelopes[0].id, exc)
                answers[id(msg)] = exc
        return
    start = 0
    for msg in members:
        answers[id(msg)] = flags[start : start + len(msg.envelopes)]
        start += len(msg.envelopes)


#: per backend class: whether it offers ``create_and_publish``
_COMBINES: dict[type, bool] = {}


def _combines(backend: Backend) -> bool:
    """Whether ``backend`` offers ``create_and_publish``. A runtime protocol
    check costs about 14 us, so it is made once per backend class."""
    kind = type(backend)
    found = _COMBINES.get(kind)
    if found is None:
        found = _COMBINES[kind] = isinstance(backend, CombinedPublish)
    return found


async def create_and_publish(
    actor: Writer,
    results: Sequence[TaskResult],
    envelopes: Sequence[Envelope],
    *,
    ttl: float | None,
) -> list[bool]:
    """Create the records of tasks that have none live and publish those
    envelopes; returns the created flags (BrokerUnavailable after retries)."""
    backend: Backend = actor.backend
    if _combines(backend):
        flags: list[bool] = await actor._retrying(
            cast(CombinedPublish, backend).create_and_publish,
            results,
            ttl=ttl,
            envelopes=envelopes,
        )
    else:
        flags = await _in_two_calls(actor, results, envelopes, ttl=ttl)
    created = sum(flags)
    actor._count("results_stored", created)
    actor._count("published", created)
    actor._count("duplicates", len(flags) - created)
    return flags


async def _in_two_calls(
    actor: Writer,
    results: Sequence[TaskResult],
    envelopes: Sequence[Envelope],
    *,
    ttl: float | None,
) -> list[bool]:
    backend = actor.backend
    flags: list[bool] = await actor._retrying(backend.results.create, results, ttl=ttl)
    chosen = [env for env, ok in zip(envelopes, flags, strict=True) if ok]
    if not chosen:
        return flags
    try:
        await actor._retrying(backend.broker.publish, chosen)
    except BaseException:
        # Not atomic here: take the records back, or the producer's retry
        # would find the id taken and queue nothing.
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            for env in chosen:
                try:
                    await backend.results.forget(env.id)
                except Exception:
                    logger.warning("could not take back the record of %r", env.id)
        raise
    return flags


__all__ = ["create_and_publish", "enqueue"]
