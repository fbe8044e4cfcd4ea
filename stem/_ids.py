"""Time-ordered unique identifiers (UUID version 7 layout)."""

from __future__ import annotations

import os
import uuid

from ._clock import now

_last_ms = 0
_seq = 0


def new_id() -> str:
    """A new UUIDv7 string: sorts by creation time, unique across processes.

    Within one process, ids made in the same millisecond stay strictly
    increasing (a 12-bit sequence fills the ``rand_a`` field).
    """
    global _last_ms, _seq
    ms = int(now() * 1000)
    if ms <= _last_ms:
        ms = _last_ms
        _seq += 1
        if _seq > 0xFFF:
            ms += 1
            _seq = 0
    else:
        _seq = 0
    _last_ms = ms
    rand_b = int.from_bytes(os.urandom(8), "big") & 0x3FFF_FFFF_FFFF_FFFF
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | _seq << 64 | 0b10 << 62 | rand_b
    return str(uuid.UUID(int=value))
