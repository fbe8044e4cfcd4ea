"""Waiting for a change counter: woken in-process, polled across processes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio


async def wait_for_change(
    seen: int,
    *,
    timeout: float,
    read: Callable[[], Awaitable[int]],
    changed: Callable[[], trio.Event],
    poll: float,
) -> int:
    """Return the counter once it differs from ``seen``, or after ``timeout``.

    ``changed()`` gives the event a change made through this process sets (the
    caller replaces it after setting it), so local changes wake at once; other
    processes' changes are seen by re-reading every ``poll`` seconds.
    """
    deadline = trio.current_time() + max(timeout, 0.0)
    while True:
        event = changed()
        current = await read()
        if current != seen:
            return current
        remaining = deadline - trio.current_time()
        if remaining <= 0:
            return current
        with trio.move_on_after(min(remaining, poll)):
            await event.wait()
