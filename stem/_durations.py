"""Durations: seconds as float at the core, ``timedelta`` accepted at the API."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

Duration = float | int | timedelta


def to_seconds(value: Duration, *, name: str = "duration") -> float:
    """Convert a duration to non-negative, finite seconds or raise ValueError."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            f"{name} must be seconds (int or float) or a timedelta, "
            f"got {type(value).__name__}"
        )
    else:
        seconds = float(value)
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        raise ValueError(
            f"{name} must be a finite number of seconds >= 0, got {value!r}"
        )
    return seconds


def seconds(value: Any) -> Any:
    """attrs converter: a ``timedelta`` becomes float seconds; other values are
    left for :func:`check_seconds` to judge (so its error names the field)."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def check_seconds(_: object, attribute: Any, value: Any) -> None:
    """attrs validator: ``None`` or finite seconds >= 0, naming the field."""
    if value is not None:
        to_seconds(value, name=attribute.name)


def optional_seconds(name: str) -> Any:
    """An attrs converter turning ``None | Duration`` into ``None | float``."""

    def convert(value: Duration | None) -> float | None:
        return None if value is None else to_seconds(value, name=name)

    return convert


def seconds_converter(name: str) -> Any:
    """An attrs converter turning a ``Duration`` into float seconds."""

    def convert(value: Duration) -> float:
        return to_seconds(value, name=name)

    return convert


def to_epoch(value: datetime, *, name: str) -> float:
    """An aware datetime as Unix epoch seconds; naive datetimes are refused."""
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a timezone-aware datetime, got {value!r}")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError(
            f"{name} must be timezone-aware (e.g. datetime.now(timezone.utc)), "
            f"got naive {value.isoformat()}"
        )
    return value.timestamp()
