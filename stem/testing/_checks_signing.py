"""Contract check for signed task messages: a backend must keep every field
a signature covers exactly as published, through a retry and a dead-letter
replay (see docs/security.md). See :mod:`stem.testing._checks_broker` for
the conventions.
"""

from __future__ import annotations

import stem
from stem import ErrorInfo
from stem._signing import SIGNATURE_HEADER, Signing, SigningKey
from stem.contracts import DeadLetter, Delivery

from ._harness import Harness

_SIGNING = Signing(
    keys=[SigningKey.hmac("contract", b"the contract suite's own secret")],
    require_signed=True,
)


async def _one(h: Harness) -> Delivery:
    [d] = await h.broker.claim(["default"], limit=1, lease=2.0, consumer="contract")
    assert d.envelope is not None, d.decode_error
    problem = _SIGNING.check_envelope(d.envelope)
    assert problem is None, f"the backend changed a signed field: {problem}"
    return d


async def check_signed_envelope_survives_retry_and_replay(h: Harness) -> None:
    """A signed envelope with awkward values (non-ASCII text, floats, big
    and negative numbers, nested lists, unique key and canvas-like meta)
    still verifies when claimed, when its retry is claimed, and when it is
    claimed again after a dead-letter replay."""
    env = _SIGNING.sign_envelope(
        h.envelope(
            args={
                "text": 'naïve café ☕ \u2028 "quoted"',
                "floats": [0.1, 1e-7, 1.5e300, -2.0, 1.0],
                "ints": [0, -1, 2**53 + 1, 10**20],
                "nested": {"b": [None, True, {"z": 1, "a": 2}]},
            },
            headers={
                "x-tenant": "ü",
                "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01",
            },
            max_retries=3,
            expires=stem.now() + 3600.123456789,
            meta={"unique_key": "k\u00e9", "link": {"ids": ["a", "b"], "n": 2}},
        )
    )
    assert SIGNATURE_HEADER in env.headers
    await h.broker.publish([env])
    first = await _one(h)
    assert first.envelope is not None
    retry = first.envelope.next_attempt(
        not_before=stem.now() + 0.5,
        error={"type": "ValueError", "message": "boom", "traceback": ""},
    )
    assert await h.broker.nack(first, requeue=True, delay=0.5, envelope=retry)
    await h.advance(1.0)
    second = await _one(h)
    entry = DeadLetter(
        task_id=second.task_id,
        name=env.name,
        queue=second.queue,
        reason="max-retries-exhausted",
        error=ErrorInfo(type="ValueError", message="boom"),
        attempts=2,
        dead_at=stem.now(),
        envelope=second.envelope,
        raw=second.raw,
    )
    assert await h.broker.dead_letter(second, entry) is True
    await h.advance(0.5)
    assert await h.broker.replay_dead("default") == [env.id]
    replayed = await _one(h)
    assert replayed.envelope is not None
    assert replayed.envelope.attempt == 1
