"""The harness a contract check runs in: a backend, a MockClock, helpers."""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import Any, Generic, ParamSpec, TypeAlias, TypeVar

import attrs
import trio
import trio.testing

import stem
from stem._ids import new_id
from stem.contracts import Backend, Broker, ResultBackend

from ._skip import skip

T = TypeVar("T")
P = ParamSpec("P")

#: What the suite needs from a backend author: a callable that opens a fresh,
#: empty backend each time it is called (an async context manager).
BackendFactory: TypeAlias = Callable[[], AbstractAsyncContextManager[Backend]]

#: A contract check: a coroutine function taking a :class:`Harness`.
Check: TypeAlias = Callable[["Harness"], Awaitable[None]]

#: Real seconds ``Harness.eventually`` waits for a condition before failing.
EVENTUALLY_REAL_SECONDS = 10.0

#: Real seconds after which a hung check fails instead of hanging the run.
WATCHDOG_REAL_SECONDS = 60.0


@attrs.define(eq=False)
class Pending(Generic[T]):
    """The outcome of a call running in the background (see Harness.start)."""

    done: trio.Event = attrs.Factory(trio.Event)
    _value: tuple[T] | None = None
    _error: Exception | None = None

    async def capture(self, call: Callable[[], Awaitable[T]]) -> None:
        """Await ``call()`` and keep its value or exception, then set ``done``.

        Cancellation is not captured: it propagates (``done`` is still set).
        """
        try:
            self._value = (await call(),)
        except Exception as exc:
            self._error = exc
        finally:
            self.done.set()

    def result(self) -> T:
        """The call's return value; re-raises its exception."""
        assert self.done.is_set(), "the background call has not finished"
        if self._error is not None:
            raise self._error
        assert self._value is not None, "the background call was cancelled"
        return self._value[0]


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
    def broker(self) -> Broker:
        return self.backend.broker

    @property
    def results(self) -> ResultBackend:
        return self.backend.results

    @property
    def does_io(self) -> bool:
        """True when the backend may leave Trio (threads, sockets): every
        backend but the built-in in-memory one."""
        return self.backend.capabilities.name != "memory"

    def require(self, capability: str) -> None:
        """Skip (printing the reason) unless the backend has ``capability``.

        The skip raises ``pytest.skip.Exception`` under pytest, else
        :class:`~stem.testing.CheckSkipped`.
        """
        caps = self.backend.capabilities
        if not getattr(caps, capability):
            skip(
                f"backend {caps.name!r} lacks capability {capability!r} "
                f"(Capabilities.{capability}=False)"
            )

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
        self, pending: Pending[Any], *, step: float, limit: float, what: str
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
        fn: Callable[P, Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Pending[T]:
        """Run ``fn(*args, **kwargs)`` in ``nursery``; its outcome lands in the
        returned :class:`Pending`."""
        pending: Pending[T] = Pending()

        async def call() -> T:
            return await fn(*args, **kwargs)

        nursery.start_soon(pending.capture, call)
        return pending

    def envelope(
        self,
        *,
        queue: str = "default",
        priority: int = 0,
        delay: float | None = None,
        name: str = "contract.noop",
        args: dict[str, Any] | None = None,
        task_id: str | None = None,
        **fields: Any,
    ) -> stem.Envelope:
        """A fresh envelope (a new id unless ``task_id`` is given); ``delay``
        sets ``not_before`` from now.

        ``fields`` are further :class:`stem.Envelope` fields (``attempt``,
        ``max_retries``, ``headers``, ...)."""
        at = stem.now()
        return stem.Envelope(
            id=task_id or new_id(),
            name=name,
            args={"n": next(self._ids)} if args is None else args,
            queue=queue,
            priority=priority,
            not_before=None if delay is None else at + delay,
            enqueued_at=at,
            **fields,
        )


E = TypeVar("E", bound=Exception)


@attrs.define(eq=False)
class Raised(Generic[E]):
    """What :func:`raises` caught: ``value`` is the exception."""

    _value: E | None = None

    @property
    def value(self) -> E:
        assert self._value is not None, "nothing was raised yet"
        return self._value


@contextmanager
def raises(kind: type[E]) -> Iterator[Raised[E]]:
    """Fail unless the block raises ``kind`` (pytest.raises without pytest);
    the caught exception is ``.value`` of what it yields."""
    caught: Raised[E] = Raised()
    try:
        yield caught
    except kind as exc:
        caught._value = exc
        return
    raise AssertionError(f"did not raise {kind.__name__}")


async def _watchdog(done: threading.Event, seconds: float) -> None:
    finished = await trio.to_thread.run_sync(done.wait, seconds, abandon_on_cancel=True)
    if not finished:
        raise TimeoutError(
            f"contract check still running after {seconds} real seconds "
            "(a wait that is never woken?)"
        )


def _sole_exception(exc: BaseException) -> BaseException | None:
    """The one exception inside nested one-member groups, else None."""
    while isinstance(exc, BaseExceptionGroup):
        if len(exc.exceptions) != 1:
            return None
        exc = exc.exceptions[0]
    return exc


@asynccontextmanager
async def open_harness(
    backend_factory: BackendFactory,
    *,
    watchdog: float | None = WATCHDOG_REAL_SECONDS,
) -> AsyncIterator[Harness]:
    """Open a fresh backend with ``backend_factory()`` and yield a
    :class:`Harness` around it; the backend is closed when the block exits.

    It must run under ``trio.testing.MockClock()`` without autojump (for
    instance ``trio.run(main, clock=MockClock())``, or pytest-trio's
    ``mock_clock`` fixture); anything else raises RuntimeError, since the checks
    move time themselves. If the block is still running after ``watchdog``
    real seconds (None: no limit) it is cancelled and TimeoutError raised.
    An exception from the block comes out bare, not wrapped in a one-member
    exception group.
    """
    clock = trio.lowlevel.current_clock()
    if not (
        isinstance(clock, trio.testing.MockClock)
        and clock.autojump_threshold == math.inf
    ):
        raise RuntimeError(
            "the contract harness needs trio.testing.MockClock() without autojump "
            f"as the run's clock (trio.run(..., clock=MockClock())), got {clock!r}"
        )
    done = threading.Event()
    try:
        async with trio.open_nursery() as nursery:
            if watchdog is not None:
                nursery.start_soon(_watchdog, done, watchdog)
            try:
                async with backend_factory() as backend:
                    yield Harness(backend=backend, clock=clock)
            finally:
                done.set()
    except BaseExceptionGroup as group:
        sole = _sole_exception(group)
        if sole is None:
            raise
        raise sole from None
