"""The harness the contract checks run in: a backend, a MockClock, helpers."""

from __future__ import annotations

import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import pytest
import trio
import trio.testing

import stem
from stem._ids import new_id
from stem.contracts import Backend

#: Real seconds ``Harness.eventually`` waits for a condition before failing.
EVENTUALLY_REAL_SECONDS = 10.0


@attrs.define(eq=False)
class Pending:
    """The outcome of a call running in the background (see Harness.start)."""

    done: trio.Event = attrs.Factory(trio.Event)
    value: Any = None
    error: BaseException | None = None

    def result(self) -> Any:
        assert self.done.is_set(), "the background call has not finished"
        if self.error is not None:
            raise self.error
        return self.value


@attrs.define(eq=False)
class Harness:
    """What a check gets: the backend under test and the clock that drives it.

    ``clock`` is a ``trio.testing.MockClock`` without autojump: time moves only
    when a check calls :meth:`advance`. For a backend whose leases follow the
    server's clock (``capabilities.server_clock``), ``advance`` also sleeps the
    same number of real seconds.
    """

    backend: Backend
    clock: trio.testing.MockClock
    _ids: itertools.count[int] = attrs.Factory(itertools.count)

    @property
    def broker(self) -> Any:
        return self.backend.broker

    @property
    def results(self) -> Any:
        return self.backend.results

    @property
    def does_io(self) -> bool:
        """True when the backend may leave Trio (threads, sockets)."""
        return self.backend.capabilities.name != "memory"

    def require(self, capability: str) -> None:
        """Skip (printing the reason) unless the backend has ``capability``."""
        caps = self.backend.capabilities
        if not getattr(caps, capability):
            reason = (
                f"backend {caps.name!r} lacks capability {capability!r} "
                f"(Capabilities.{capability}=False)"
            )
            print(f"SKIPPED: {reason}")
            pytest.skip(reason)

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` and let the backend react."""
        self.clock.jump(seconds)
        if self.backend.capabilities.server_clock:
            await trio.to_thread.run_sync(time.sleep, seconds)
        await self.settle()

    async def settle(self) -> None:
        """Let every task (and, for I/O backends, every thread hop) run until
        all are blocked."""
        await trio.testing.wait_all_tasks_blocked()
        if self.does_io:
            await trio.to_thread.run_sync(time.sleep, 0.02)
            await trio.testing.wait_all_tasks_blocked()

    async def eventually(self, predicate: Callable[[], bool], what: str) -> None:
        """Wait in real time (no clock movement) until ``predicate()`` holds."""
        deadline = time.monotonic() + EVENTUALLY_REAL_SECONDS
        while True:
            await trio.testing.wait_all_tasks_blocked()
            if predicate():
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{what}: not seen within {EVENTUALLY_REAL_SECONDS} real seconds"
                )
            await trio.to_thread.run_sync(time.sleep, 0.005)

    async def advance_until(
        self, pending: Pending, *, step: float, limit: float, what: str
    ) -> float:
        """Advance by ``step`` until ``pending`` is done; returns seconds moved."""
        moved = 0.0
        while not pending.done.is_set():
            if moved >= limit:
                raise AssertionError(f"{what}: not done after {moved} s of clock")
            await self.advance(step)
            moved += step
        return moved

    def start(
        self,
        nursery: trio.Nursery,
        fn: Callable[..., Awaitable[Any]],
        *args: Any,
        **kwargs: Any,
    ) -> Pending:
        """Run ``fn(*args, **kwargs)`` in ``nursery``; its outcome lands in the
        returned :class:`Pending`."""
        pending = Pending()

        async def runner() -> None:
            try:
                pending.value = await fn(*args, **kwargs)
            except Exception as exc:
                pending.error = exc
            finally:
                pending.done.set()

        nursery.start_soon(runner)
        return pending

    def envelope(
        self,
        *,
        queue: str = "default",
        priority: int = 0,
        delay: float | None = None,
        name: str = "contract.noop",
        args: dict[str, Any] | None = None,
        **fields: Any,
    ) -> stem.Envelope:
        """A fresh envelope (new id); ``delay`` sets ``not_before`` from now."""
        at = stem.now()
        return stem.Envelope(
            id=new_id(),
            name=name,
            args={"n": next(self._ids)} if args is None else args,
            queue=queue,
            priority=priority,
            not_before=None if delay is None else at + delay,
            enqueued_at=at,
            **fields,
        )
