"""Sync handlers in threads, and the threads abandoned at a time limit.

Python cannot stop a thread from outside. When an attempt running in a
thread is cancelled (a time limit, a terminate-revocation, shutdown), the
worker stops waiting for it: the attempt ends on time and its slot is free,
while the thread runs on until its function returns, its result discarded.

Each attempt gets a capacity limiter of its own, so an abandoned thread
holds no token another task needs: the slots already bound how many
handlers run at once (a worker-wide limiter kept the token of every hung
thread, and two hung tasks made the next sync task wait). Abandoned threads
are counted until they return, for ``worker_statistics()``, heartbeats,
``stem inspect`` and ``stem health``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, cast

import attrs
import trio

from stem._clock import now


@attrs.frozen(kw_only=True)
class AbandonedThread:
    """A thread still running the handler of an attempt the worker gave up
    on at ``abandoned_at`` (epoch seconds)."""

    task_id: str
    name: str
    attempt: int
    abandoned_at: float


class ThreadRunner:
    """Runs handlers in threads and tracks the ones it abandoned (used from
    the Trio thread only)."""

    def __init__(self) -> None:
        self._abandoned: dict[int, AbandonedThread] = {}
        self._ids = itertools.count()

    async def run(
        self, fn: Callable[[], Any], *, task_id: str, name: str, attempt: int
    ) -> Any:
        """``fn()`` in a thread. On cancellation the thread is abandoned (the
        cancellation propagates at once) and counted until it returns."""
        life = _Lifetime(next(self._ids), on_end=self._forget)
        try:
            return await trio.to_thread.run_sync(
                fn,
                limiter=cast(trio.CapacityLimiter, life),
                abandon_on_cancel=True,
            )
        except trio.Cancelled:
            if life.running:
                self._abandoned[life.token] = AbandonedThread(
                    task_id=task_id, name=name, attempt=attempt, abandoned_at=now()
                )
            raise

    def abandoned(self) -> tuple[AbandonedThread, ...]:
        """The threads abandoned and still running, oldest first."""
        return tuple(self._abandoned.values())

    def _forget(self, token: int) -> None:
        self._abandoned.pop(token, None)


class _Lifetime:
    """A one-thread limiter that knows whether its thread runs.

    ``trio.to_thread.run_sync`` calls ``acquire_on_behalf_of`` just before it
    starts the thread and ``release_on_behalf_of`` (in the Trio thread) once
    the thread has finished, even after the caller abandoned it: its
    documented contract for a "CapacityLimiter-like object"."""

    def __init__(self, token: int, *, on_end: Callable[[int], None]) -> None:
        self.token = token
        self.on_end = on_end
        self.running = False

    async def acquire_on_behalf_of(self, borrower: object) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        self.running = True  # no checkpoint between this and the thread start

    def release_on_behalf_of(self, borrower: object) -> None:
        self.running = False
        self.on_end(self.token)


__all__ = ["AbandonedThread", "ThreadRunner"]
