"""Retry policies: when a failed attempt is tried again, and after how long."""

from __future__ import annotations

import random
from collections.abc import Callable

import attrs

from ._durations import check_seconds, seconds

ExceptionTypes = tuple[type[BaseException], ...]


def _exception_types(value: object) -> ExceptionTypes:
    if isinstance(value, type):
        value = (value,)
    if not isinstance(value, tuple | list) or not all(
        isinstance(t, type) and issubclass(t, BaseException) for t in value
    ):
        raise TypeError(f"expected exception types, got {value!r}")
    return tuple(value)


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped.

    The delay before attempt ``n + 1`` (after ``n`` failed attempts) is drawn
    uniformly from ``[0, min(cap, base * 2 ** (n - 1))]`` when ``jitter`` is
    true, else it is that bound exactly. An exception is retried when it is an
    instance of ``retry_on`` and not of ``dont_retry_on``.
    """

    base: float = attrs.field(default=1.0, converter=seconds, validator=check_seconds)
    cap: float = attrs.field(default=300.0, converter=seconds, validator=check_seconds)
    factor: float = attrs.field(default=2.0)
    jitter: bool = True
    retry_on: ExceptionTypes = attrs.field(
        default=(Exception,), converter=_exception_types
    )
    dont_retry_on: ExceptionTypes = attrs.field(default=(), converter=_exception_types)

    @factor.validator
    def _check_factor(self, _: object, value: float) -> None:
        if not value >= 1:
            raise ValueError(f"factor must be >= 1, got {value!r}")

    def __attrs_post_init__(self) -> None:
        if self.cap < self.base:
            raise ValueError(f"cap ({self.cap} s) must be >= base ({self.base} s)")

    def bound(self, failed_attempts: int) -> float:
        """The largest delay after ``failed_attempts`` failures (>= 1)."""
        exponent = max(failed_attempts - 1, 0)
        # Guard against float overflow for very large attempt counts.
        if exponent > 1024:
            return self.cap
        try:
            return min(self.cap, self.base * self.factor**exponent)
        except OverflowError:  # e.g. factor 10 after a few hundred failures
            return self.cap

    def delay(
        self, failed_attempts: int, *, rng: Callable[[], float] = random.random
    ) -> float:
        """Seconds to wait before the next attempt; always within [0, cap]."""
        bound = self.bound(failed_attempts)
        if not self.jitter:
            return bound
        return min(max(rng() * bound, 0.0), self.cap)

    def should_retry(self, error: BaseException) -> bool:
        """Whether this kind of error is worth another attempt."""
        if self.dont_retry_on and isinstance(error, self.dont_retry_on):
            return False
        return isinstance(error, self.retry_on)


DEFAULT_RETRY_POLICY = RetryPolicy()
