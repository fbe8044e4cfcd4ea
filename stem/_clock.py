"""Wall-clock time derived from Trio's clock.

Stem stores absolute times (``not_before``, ``expires``, ``dead_at``) as Unix
epoch seconds so that processes agree on them. Reading ``time.time()`` directly
would escape Trio's clock and break ``MockClock`` tests, so the wall clock is
anchored once per ``trio.run`` and then advanced by ``trio.current_time()``:
under ``MockClock`` a 24-hour sleep moves Stem's wall clock by 24 hours too.
"""

from __future__ import annotations

import time

import trio

_ANCHOR: trio.lowlevel.RunVar[tuple[float, float]] = trio.lowlevel.RunVar("stem_clock")


def now() -> float:
    """Seconds since the Unix epoch, following Trio's clock inside ``trio.run``.

    Outside a Trio run it is plain ``time.time()``.
    """
    try:
        trio_now = trio.current_time()
    except RuntimeError:
        return time.time()
    try:
        wall, mono = _ANCHOR.get()
    except LookupError:
        wall, mono = time.time(), trio_now
        _ANCHOR.set((wall, mono))
    return wall + (trio_now - mono)


async def sleep_until_wall(when: float) -> None:
    """Sleep until Stem's wall clock reads ``when`` (returns at once if past)."""
    delay = when - now()
    if delay > 0:
        await trio.sleep(delay)
