"""Rate-limit specifications such as ``"100/m"``."""

from __future__ import annotations

import re

import attrs

_PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_FORM = re.compile(r"\s*(\d+(?:\.\d+)?)\s*/\s*(\d*)\s*([smh])\s*")


@attrs.frozen(kw_only=True)
class RateLimit:
    """``limit`` tokens per ``period`` seconds, refilled evenly.

    ``"5/s"`` gives one token every 0.2 s. ``burst`` is how many tokens may be
    saved up (1 unless said otherwise).
    """

    limit: float = attrs.field()
    period: float = attrs.field()
    burst: int = attrs.field(default=1)

    @limit.validator
    def _check_limit(self, _: object, value: float) -> None:
        if not value > 0:
            raise ValueError(f"rate limit must allow more than 0 tasks, got {value!r}")

    @period.validator
    def _check_period(self, _: object, value: float) -> None:
        if not value > 0:
            raise ValueError(f"rate limit period must be > 0 seconds, got {value!r}")

    @burst.validator
    def _check_burst(self, _: object, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"rate_limit_burst must be an int >= 1, got {value!r}")

    @property
    def interval(self) -> float:
        """Seconds between two tokens."""
        return self.period / self.limit

    @property
    def per_second(self) -> float:
        return self.limit / self.period

    @classmethod
    def parse(cls, spec: str | RateLimit, *, burst: int = 1) -> RateLimit:
        """Parse ``"N/s"``, ``"N/m"``, ``"N/h"`` (or ``"N/10s"``)."""
        if isinstance(spec, RateLimit):
            return spec
        if not isinstance(spec, str):
            raise TypeError(f"rate_limit must be a string like '100/m', got {spec!r}")
        match = _FORM.fullmatch(spec)
        if match is None:
            raise ValueError(
                f"invalid rate_limit {spec!r}: expected 'N/s', 'N/m' or 'N/h' "
                "(N tasks per second, minute or hour; e.g. '100/m'), "
                "optionally with a multiplier such as '5/10s'"
            )
        count, mult, unit = match.groups()
        period = _PERIODS[unit] * (int(mult) if mult else 1)
        if period <= 0:
            raise ValueError(f"invalid rate_limit {spec!r}: the period must be > 0")
        return cls(limit=float(count), period=period, burst=burst)

    def __str__(self) -> str:
        return f"{self.limit:g}/{self.period:g}s"
