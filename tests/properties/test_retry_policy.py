"""Hypothesis properties of RetryPolicy and of the retry decision."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stem import Envelope, RetryPolicy, TaskOptions
from stem.actors import _outcomes
from stem.contracts import Delivery

policies = st.builds(
    lambda base, extra, factor, jitter: RetryPolicy(
        base=base, cap=base + extra, factor=factor, jitter=jitter
    ),
    base=st.floats(0.0, 1000.0, allow_nan=False),
    extra=st.floats(0.0, 10_000.0, allow_nan=False),
    factor=st.floats(1.0, 10.0, allow_nan=False),
    jitter=st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(
    policy=policies,
    failed=st.integers(1, 5000),
    draw=st.floats(0.0, 1.0, exclude_max=True),
)
def test_delay_is_within_zero_and_cap(
    policy: RetryPolicy, failed: int, draw: float
) -> None:
    """Every delay lies in [0, cap], whatever the attempt count and the draw."""
    delay = policy.delay(failed, rng=lambda: draw)
    assert 0.0 <= delay <= policy.cap
    assert delay <= policy.bound(failed)


@settings(max_examples=200, deadline=None)
@given(policy=policies, failed=st.integers(1, 60))
def test_bound_never_shrinks(policy: RetryPolicy, failed: int) -> None:
    """The bound grows (or stays) with every failure, up to the cap."""
    assert policy.bound(failed) <= policy.bound(failed + 1) <= policy.cap


@settings(max_examples=200, deadline=None)
@given(max_retries=st.integers(0, 10), policy=policies)
def test_attempts_never_exceed_max_retries_plus_one(
    max_retries: int, policy: RetryPolicy
) -> None:
    """Failing every attempt gives exactly max_retries + 1 attempts, then a
    dead letter; every retry delay is within [0, cap]."""
    opts = TaskOptions(retry_policy=policy)
    env = Envelope(id="t", name="t", max_retries=max_retries)
    attempts = 0
    while True:
        attempts += 1
        assert env.attempt == attempts <= max_retries + 1
        delivery = Delivery(
            receipt=str(attempts),
            queue="default",
            task_id="t",
            envelope=env,
            lease_until=0.0,
        )
        outcome = _outcomes.failed(delivery, RuntimeError("x"), opts, at=100.0)
        if outcome.kind == "dead":
            break
        assert 0.0 <= outcome.delay <= policy.cap
        assert outcome.finish.envelope is not None
        env = outcome.finish.envelope
    assert attempts == max_retries + 1
    assert outcome.reason == "max-retries-exhausted"
    assert outcome.finish.dead is not None
    assert [h["attempt"] for h in outcome.finish.dead.history] == list(
        range(1, attempts + 1)
    )
