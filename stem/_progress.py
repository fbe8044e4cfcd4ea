"""Task progress as data: :class:`Progress` (``ctx.progress(done, total, info)``).

A running task reports how far it got; the worker stores the latest report on
the task's result record (throttled: see ``stem.actors._progress``), so
``client.get``, ``stem result`` and canvas handles show it.
"""

from __future__ import annotations

import json
import math
from typing import Any

import attrs

from ._errors import DecodeError, EncodeError

#: the largest ``info`` a report may carry, encoded as JSON (bytes)
MAX_INFO_BYTES = 4096


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"progress {name} must be a number, got {value!r:.60}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"progress {name} must be finite and >= 0, got {value!r}")
    return number


def _done(_inst: Any, _attr: Any, value: Any) -> None:
    _number(value, "done")


def _total(_inst: Any, _attr: Any, value: Any) -> None:
    if value is not None and _number(value, "total") == 0:
        raise ValueError("progress total must be > 0 (or None: unknown)")


def _info(_inst: Any, _attr: Any, value: Any) -> None:
    if value is None:
        return
    try:
        size = len(_encode(value).encode())
    except (TypeError, ValueError, RecursionError) as exc:
        raise EncodeError(f"progress info must be a JSON value: {exc}") from None
    if size > MAX_INFO_BYTES:
        raise EncodeError(
            f"progress info is {size} bytes encoded; at most {MAX_INFO_BYTES} "
            "are stored"
        )


def _encode(value: Any) -> str:
    return json.dumps(value, allow_nan=False, separators=(",", ":"))


@attrs.frozen(kw_only=True)
class Progress:
    """How far a running task got: ``done`` out of ``total`` (None: unknown),
    with optional JSON ``info`` (a stage name, a message, counters).

    ``done`` may pass ``total`` (estimates drift); :attr:`fraction` is capped
    at 1. Invalid values raise TypeError/ValueError (EncodeError for ``info``
    that is not JSON or over 4 KiB) when the report is made.
    """

    done: float | int = attrs.field(validator=_done)
    total: float | int | None = attrs.field(default=None, validator=_total)
    info: Any = attrs.field(default=None, validator=_info)
    #: when it was reported (epoch seconds)
    at: float = 0.0

    @property
    def fraction(self) -> float | None:
        """done / total in 0..1, or None when the total is unknown."""
        if self.total is None:
            return None
        return min(float(self.done) / float(self.total), 1.0)

    def describe(self) -> str:
        """``3/10 (30%)``, or ``3`` without a total; info appended."""
        text = f"{self.done:g}"
        fraction = self.fraction
        if self.total is not None and fraction is not None:
            text += f"/{self.total:g} ({fraction:.0%})"
        if self.info is not None:
            text += f" {_encode(self.info)}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "done": self.done,
            "total": self.total,
            "info": self.info,
            "at": self.at,
        }

    @classmethod
    def from_dict(cls, data: object) -> Progress:
        """The progress ``data`` describes; DecodeError when it is invalid."""
        if not isinstance(data, dict):
            raise DecodeError("result field 'progress' must be an object")
        at = data.get("at", 0.0)
        if isinstance(at, bool) or not isinstance(at, int | float):
            raise DecodeError("progress field 'at' must be a time")
        try:
            return cls(
                done=data.get("done"),  # type: ignore[arg-type]
                total=data.get("total"),
                info=data.get("info"),
                at=float(at),
            )
        except (TypeError, ValueError) as exc:
            raise DecodeError(f"result field 'progress' is invalid: {exc}") from None


__all__ = ["MAX_INFO_BYTES", "Progress"]
