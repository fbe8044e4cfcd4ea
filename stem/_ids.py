"""Time-ordered unique identifiers (UUID version 7 layout)."""

from __future__ import annotations

import os
import uuid

import attrs
import trio

from ._clock import now
from ._text import has_control

#: The longest task id accepted (a workflow activity's id is the run id, at
#: most 200 characters, then ``:<step>``).
MAX_ID_LENGTH = 255


@attrs.define
class _Sequence:
    last_ms: int = 0
    seq: int = 0


# One sequence per trio.run (each run may have its own clock, e.g. a MockClock
# far in the future), and one for code outside any run.
_RUN_SEQUENCE: trio.lowlevel.RunVar[_Sequence] = trio.lowlevel.RunVar("stem_ids")
_OUTSIDE = _Sequence()


def _sequence() -> _Sequence:
    try:
        return _RUN_SEQUENCE.get()
    except LookupError:
        fresh = _Sequence()
        _RUN_SEQUENCE.set(fresh)
        return fresh
    except RuntimeError:  # not inside trio.run
        return _OUTSIDE


def new_id() -> str:
    """A new UUIDv7 string: sorts by creation time, unique across processes.

    Within one run, ids made in the same millisecond stay strictly increasing
    (a 12-bit sequence fills the ``rand_a`` field).
    """
    state = _sequence()
    ms = int(now() * 1000)
    if ms <= state.last_ms:
        ms = state.last_ms
        state.seq += 1
        if state.seq > 0xFFF:
            ms += 1
            state.seq = 0
    else:
        state.seq = 0
    state.last_ms = ms
    rand_b = int.from_bytes(os.urandom(8), "big") & 0x3FFF_FFFF_FFFF_FFFF
    value = (
        (ms & 0xFFFF_FFFF_FFFF) << 80
        | 0x7 << 76
        | state.seq << 64
        | 0b10 << 62
        | rand_b
    )
    return str(uuid.UUID(int=value))


def check_id(
    value: object, *, what: str = "task id", limit: int = MAX_ID_LENGTH
) -> str:
    """Return ``value`` if it is a usable id: a non-empty string of at most
    ``limit`` characters without control characters (a newline in an id
    would forge a log line). Raise ValueError naming ``what`` otherwise."""
    if (
        not isinstance(value, str)
        or not value
        or len(value) > limit
        or has_control(value)
    ):
        raise ValueError(
            f"{what} must be 1-{limit} characters without control characters, "
            f"got {value!r}"
        )
    return value
