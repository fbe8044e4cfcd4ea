"""How an attempt's outcome becomes a :class:`Finish` for the BrokerActor.

Pure functions (no I/O, no clock reads: the caller passes ``at``), shared by
the Worker and by the property tests, so the decision "retry, dead-letter or
done" is made in exactly one place:

* success -> SUCCEEDED, ack;
* a failure with attempts left and a retryable error -> RETRYING, nack with
  the next attempt's envelope after the policy's delay (no dead letter);
* otherwise -> FAILED and one dead-letter entry with the attempt history;
* revocation / expiry -> REVOKED, dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import attrs

from stem._codec import clip_raw, encode_envelope
from stem._envelope import Envelope
from stem._errors import Retry, TimeLimitExceeded
from stem._options import TaskOptions
from stem._result import ErrorInfo, TaskResult
from stem._signing import Signing
from stem._states import TaskState
from stem._taskquery import operator_meta
from stem.contracts import DeadLetter, Delivery

from ._broker import Finish


def record(env: Envelope, state: TaskState, at: float, **extra: Any) -> TaskResult:
    """The result record of ``env``'s current attempt in ``state`` (its
    meta starts with what operators see: small args and the trace id)."""
    meta = {**operator_meta(env.args, env.headers), **extra.pop("meta", {})}
    return TaskResult(
        task_id=env.id,
        state=state,
        attempt=env.attempt,
        name=env.name,
        queue=env.queue,
        updated_at=at,
        meta=meta,
        **extra,
    )


@attrs.frozen(kw_only=True)
class FailureOutcome:
    """A failed attempt's decision: ``kind`` is "retry" or "dead"."""

    kind: Literal["retry", "dead"]
    finish: Finish
    error: ErrorInfo
    delay: float = 0.0
    reason: str = ""


def succeeded(
    delivery: Delivery,
    value: Any,
    *,
    at: float,
    ttl: float | None,
    on_done: Callable[[Delivery], None] | None = None,
) -> Finish:
    env = delivery.envelope
    assert env is not None
    result = record(env, TaskState.SUCCEEDED, at, value=value)
    return Finish(
        delivery=delivery, action="ack", result=result, ttl=ttl, on_done=on_done
    )


def revoked(delivery: Delivery, reason: str, *, at: float, ttl: float | None) -> Finish:
    env = delivery.envelope
    assert env is not None
    result = record(env, TaskState.REVOKED, at, meta={"reason": reason})
    return Finish(delivery=delivery, action="drop", result=result, ttl=ttl)


def handed_back(delivery: Delivery, *, at: float) -> Finish:
    """Give an unfinished delivery back to its queue (shutdown): QUEUED again."""
    env = delivery.envelope
    result = None
    if env is not None:
        result = record(env, TaskState.QUEUED, at)
    return Finish(delivery=delivery, action="retry", result=result, envelope=env)


def failed(
    delivery: Delivery, error: BaseException, opts: TaskOptions, *, at: float
) -> FailureOutcome:
    """Retry (attempts left, retryable error) or dead-letter the attempt."""
    env = delivery.envelope
    assert env is not None
    info = ErrorInfo.from_exception(error)
    if isinstance(error, Retry):
        retryable = True
        delay = (
            error.countdown
            if error.countdown is not None
            else opts.retry_policy.delay(env.attempt)
        )
    else:
        retryable = opts.retry_policy.should_retry(error)
        delay = opts.retry_policy.delay(env.attempt)
    history_item = {"attempt": env.attempt, "at": at, **info.to_dict()}
    if retryable and env.attempt <= env.max_retries:
        nxt = env.next_attempt(not_before=at + delay, error=history_item)
        result = record(
            env, TaskState.RETRYING, at, error=info, meta={"retry_at": at + delay}
        )
        finish = Finish(
            delivery=delivery,
            action="retry",
            result=result,
            envelope=nxt,
            delay=delay,
            ttl=opts.result_ttl,
        )
        return FailureOutcome(kind="retry", finish=finish, error=info, delay=delay)
    if isinstance(error, TimeLimitExceeded):
        reason = "time-limit"
    elif retryable:
        reason = "max-retries-exhausted"
    else:
        reason = "non-retryable-error"
    history = (*env.meta.get("history", ()), history_item)
    result = record(env, TaskState.FAILED, at, error=info, meta={"reason": reason})
    entry = DeadLetter(
        task_id=env.id,
        name=env.name,
        queue=env.queue,
        reason=reason,
        error=info,
        attempts=env.attempt,
        dead_at=at,
        envelope=env,
        history=tuple(history),
    )
    finish = Finish(
        delivery=delivery,
        action="dead",
        result=result,
        dead=entry,
        ttl=opts.result_ttl,
    )
    return FailureOutcome(kind="dead", finish=finish, error=info, reason=reason)


#: The dead-letter reason of a message larger than the worker's
#: ``max_message_bytes``.
TOO_LARGE = "message-too-large"


#: the dead-letter reason of a task message whose signature is missing
#: (under ``require_signed``) or does not verify
SIGNATURE_INVALID = "signature-invalid"


def refusal(
    delivery: Delivery,
    registered: bool,
    max_bytes: int,
    signing: Signing | None = None,
) -> tuple[str, ErrorInfo] | None:
    """Why ``delivery`` cannot run at all (a dead-letter reason and the
    error), or None: its body did not decode, is larger than ``max_bytes``,
    its signature is missing (when ``signing`` requires one) or does not
    verify, or it names a task this worker does not have (``registered``
    False)."""
    env = delivery.envelope
    if env is None:
        message = delivery.decode_error or "undecodable message"
        return "decode-error", ErrorInfo(type="stem.DecodeError", message=message)
    if delivery.size > max_bytes:
        return TOO_LARGE, ErrorInfo(
            type="stem.DecodeError",
            message=(
                f"the message is {delivery.size} bytes, more than this worker's "
                f"max_message_bytes ({max_bytes})"
            ),
        )
    if signing is not None:
        problem = signing.check_envelope(env)
        if problem is not None:
            return SIGNATURE_INVALID, ErrorInfo(
                type="stem.SignatureInvalid", message=problem
            )
    if not registered:
        return "unregistered-task", ErrorInfo(
            type="stem.UnknownTask",
            message=f"no task named {env.name!r} is registered on this worker",
        )
    return None


def rejected(delivery: Delivery, reason: str, info: ErrorInfo, *, at: float) -> Finish:
    """Dead-letter a delivery that cannot run at all (undecodable, too
    large, unknown). A message too large keeps only its first bytes. A
    message whose signature fails records no result: its id may be forged,
    and a FAILED record would settle the real task of that id."""
    env = delivery.envelope
    kept, raw = env, delivery.raw
    if reason == TOO_LARGE and env is not None:
        kept, raw = None, clip_raw(encode_envelope(env))
    entry = DeadLetter(
        task_id=delivery.task_id or (env.id if env else ""),
        name=env.name if env else "",
        queue=delivery.queue,
        reason=reason,
        error=info,
        attempts=env.attempt if env else delivery.delivery_count,
        dead_at=at,
        envelope=kept,
        raw=raw,
    )
    result = None
    if env is not None and reason != SIGNATURE_INVALID:
        result = record(env, TaskState.FAILED, at, error=info, meta={"reason": reason})
    return Finish(delivery=delivery, action="dead", result=result, dead=entry)
