"""Task options: everything a user can set on a task, validated at construction."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal

import attrs

from ._durations import Duration, check_seconds, seconds
from ._ratelimit import RateLimit
from ._retry import DEFAULT_RETRY_POLICY, RetryPolicy

MIN_PRIORITY = 0
MAX_PRIORITY = 9
DEFAULT_QUEUE = "default"
DEFAULT_VISIBILITY_TIMEOUT = 30.0

_QUEUE_NAME = re.compile(r"[A-Za-z0-9_.:\-]{1,200}")


def check_queue_name(name: object) -> str:
    """Return ``name`` if it is a valid queue name, else raise ValueError."""
    if not isinstance(name, str) or not _QUEUE_NAME.fullmatch(name):
        raise ValueError(
            f"invalid queue name {name!r}: use 1-200 characters from "
            "letters, digits, '_', '-', '.', ':'"
        )
    return name


def check_priority(value: object) -> int:
    """Return ``value`` if it is a priority in 0..9, else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"priority must be an int from 0 to 9, got {value!r}")
    if not MIN_PRIORITY <= value <= MAX_PRIORITY:
        raise ValueError(
            f"priority must be from {MIN_PRIORITY} (lowest) to {MAX_PRIORITY} "
            f"(highest), got {value}"
        )
    return value


def _rate_limit(value: str | RateLimit | None) -> RateLimit | None:
    return None if value is None else RateLimit.parse(value)


def _non_negative_int(name: str) -> Any:
    def check(_: object, __: object, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")

    return check


@attrs.frozen(kw_only=True)
class TaskOptions:
    """How a task is queued, limited, retried and deduplicated.

    Durations are seconds (float) or ``timedelta``. Invalid values raise at
    construction with a message saying what was expected.
    """

    queue: str = attrs.field(
        default=DEFAULT_QUEUE, validator=lambda _, __, v: check_queue_name(v)
    )
    max_retries: int = attrs.field(
        default=0, validator=_non_negative_int("max_retries")
    )
    priority: int = attrs.field(default=0, validator=lambda _, __, v: check_priority(v))
    rate_limit: RateLimit | None = attrs.field(default=None, converter=_rate_limit)
    rate_limit_burst: int | None = None
    rate_limit_scope: Literal["local", "global"] = "local"
    rate_limit_key: str | None = None
    soft_time_limit: float | None = attrs.field(
        default=None, converter=seconds, validator=check_seconds
    )
    hard_time_limit: float | None = attrs.field(
        default=None, converter=seconds, validator=check_seconds
    )
    visibility_timeout: float = attrs.field(
        default=DEFAULT_VISIBILITY_TIMEOUT,
        converter=seconds,
        validator=check_seconds,
    )
    retry_policy: RetryPolicy = DEFAULT_RETRY_POLICY
    unique: bool = False
    unique_for: float | None = attrs.field(
        default=None, converter=seconds, validator=check_seconds
    )
    expires: float | None = attrs.field(
        default=None, converter=seconds, validator=check_seconds
    )
    result_ttl: float | None = attrs.field(
        default=86400.0, converter=seconds, validator=check_seconds
    )
    execution: Literal["async", "thread", "process"] = "async"

    def __attrs_post_init__(self) -> None:
        if self.rate_limit_scope not in ("local", "global"):
            raise ValueError(
                "rate_limit_scope must be 'local' or 'global', "
                f"got {self.rate_limit_scope!r}"
            )
        if self.rate_limit_burst is not None:
            if self.rate_limit is None:
                raise ValueError("rate_limit_burst needs a rate_limit")
            object.__setattr__(
                self,
                "rate_limit",
                attrs.evolve(self.rate_limit, burst=self.rate_limit_burst),
            )
        if self.visibility_timeout <= 0:
            raise ValueError("visibility_timeout must be > 0 seconds")
        if (
            self.soft_time_limit is not None
            and self.hard_time_limit is not None
            and self.soft_time_limit > self.hard_time_limit
        ):
            raise ValueError(
                f"soft_time_limit ({self.soft_time_limit} s) must not exceed "
                f"hard_time_limit ({self.hard_time_limit} s)"
            )
        if not isinstance(self.retry_policy, RetryPolicy):
            raise TypeError(
                f"retry_policy must be a stem.RetryPolicy, got {self.retry_policy!r}"
            )
        if self.execution not in ("async", "thread", "process"):
            raise ValueError(
                "execution must be 'async', 'thread' or 'process', "
                f"got {self.execution!r}"
            )
        if self.unique_for is not None and not self.unique:
            object.__setattr__(self, "unique", True)

    def merge(self, **overrides: Any) -> TaskOptions:
        """A copy with ``overrides`` applied (validated again)."""
        return attrs.evolve(self, **overrides)


def option_names() -> frozenset[str]:
    return frozenset(f.name for f in attrs.fields(TaskOptions))


__all__ = ["Duration", "TaskOptions", "timedelta"]
