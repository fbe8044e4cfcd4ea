"""One Trio thread per process, and the views that run a Trio object's
coroutines in it: what :class:`stem.BlockingClient` and
:class:`stem.asyncio.Client` are made of.

The :class:`Portal` is a daemon thread running ``trio.run`` for the life of
the process (or until :func:`shutdown`, which ``atexit`` calls). Every
client of the process opens its ``stem.Client`` in that thread, so the
actors, connections and clocks stay in Trio, and callers in other threads
(or on an asyncio loop) cross into it once per call.

A view (:class:`Bridged`) holds how to reach its Trio object from the
current client (``make``): after ``os.fork`` the child's first call opens a
new portal and a new ``stem.Client``, and the view rebuilds its object from
it, so handles and sub-objects made before the fork keep working.

:func:`blocking` and :func:`awaitable` turn a coroutine method of the Trio
class into a method of the view with the same parameters (typed through
``ParamSpec``) and docstring, so the views restate no signature.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import functools
import logging
import os
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

import outcome
import trio

logger = logging.getLogger("stem.bridge")

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R")
S = TypeVar("S")

#: seconds ``shutdown`` (and so interpreter exit) waits for clients to close
SHUTDOWN_TIMEOUT = 30.0


class Portal:
    """A Trio run in a daemon thread; run coroutines in it from any thread.

    Thread-safe. A coroutine submitted runs as a task of the portal's
    nursery; :meth:`run` blocks the calling thread until it returns,
    :meth:`run_async` awaits it on the caller's asyncio loop. Opened
    resources register a closer (:meth:`on_shutdown`) that :meth:`stop`
    awaits before the run ends.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._stop: trio.Event | None = None
        self._closers: dict[int, Callable[[], Awaitable[None]]] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._thread_main, name="stem-trio", daemon=True
        )
        self._error: Exception | None = None
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise RuntimeError("the stem Trio thread did not start") from self._error

    def _thread_main(self) -> None:
        try:
            trio.run(self._main)
        except Exception as exc:
            self._error = exc
            logger.exception("the stem Trio thread ended with an error")
        finally:
            self._ready.set()

    async def _main(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._token = trio.lowlevel.current_trio_token()
            self._stop = trio.Event()
            self._ready.set()
            await self._stop.wait()
            with self._lock:
                closers = list(self._closers.values())
                self._closers.clear()
            with trio.move_on_after(SHUTDOWN_TIMEOUT):
                for close in closers:
                    try:
                        await close()
                    except Exception:
                        logger.exception("closing a stem client at shutdown failed")
            nursery.cancel_scope.cancel()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and self._token is not None

    @property
    def nursery(self) -> trio.Nursery:
        """The portal's nursery (use only from inside the portal's thread)."""
        assert self._nursery is not None
        return self._nursery

    def in_portal_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def _token_or_fail(self) -> trio.lowlevel.TrioToken:
        if self._token is None or not self._thread.is_alive():
            raise RuntimeError("the stem Trio thread has stopped (interpreter exit?)")
        return self._token

    def run(
        self, afn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``afn(*args, **kwargs)`` in the Trio thread; block until it
        returns (or raises). Not from the Trio thread itself, nor from inside
        another ``trio.run`` (RuntimeError: use ``stem.Client`` there)."""
        if self.in_portal_thread():
            raise RuntimeError("a blocking stem call from the stem Trio thread")
        if trio.lowlevel.in_trio_run():
            raise RuntimeError(
                "stem.BlockingClient called from inside a Trio run: use "
                "`async with stem.Client(...)` there instead"
            )
        token = self._token_or_fail()
        done = threading.Lock()
        done.acquire()
        box: list[outcome.Outcome[T]] = []

        def settle(result: outcome.Outcome[T]) -> None:
            box.append(result)
            done.release()

        job = _Job(functools.partial(afn, *args, **kwargs), settle)
        token.run_sync_soon(self._start_job, job)
        try:
            done.acquire()
        except BaseException:  # KeyboardInterrupt in a script: stop the call
            try:
                token.run_sync_soon(job.cancel)
            except trio.RunFinishedError:
                pass
            raise
        return box[0].unwrap()

    async def run_async(
        self, afn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``afn(*args, **kwargs)`` in the Trio thread and await it on
        the running asyncio loop, which keeps running meanwhile.

        Cancelling the awaiting asyncio task cancels the Trio task (it sees
        ``trio.Cancelled`` at its next checkpoint); the awaiting task gets
        ``asyncio.CancelledError`` at once, without waiting for it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def deliver(result: outcome.Outcome[T]) -> None:
            if future.done():  # cancelled meanwhile
                return
            if isinstance(result, outcome.Value):
                future.set_result(result.value)
            elif isinstance(result, outcome.Error):
                future.set_exception(result.error)

        def settle(result: outcome.Outcome[T]) -> None:
            try:
                loop.call_soon_threadsafe(deliver, result)
            except RuntimeError:  # the loop is closed: nobody is waiting
                pass

        job = _Job(functools.partial(afn, *args, **kwargs), settle)
        token = self._token_or_fail()
        token.run_sync_soon(self._start_job, job)
        try:
            return await future
        except asyncio.CancelledError:
            try:
                token.run_sync_soon(job.cancel)
            except trio.RunFinishedError:
                pass
            raise

    def _start_job(self, job: _Job[Any]) -> None:
        if self._nursery is None or self._stop is None or self._stop.is_set():
            job.settle(outcome.Error(RuntimeError("the stem Trio thread is stopping")))
            return
        self._nursery.start_soon(job.run)

    def on_shutdown(self, key: int, close: Callable[[], Awaitable[None]]) -> None:
        """Await ``close()`` in the Trio thread when the portal stops."""
        with self._lock:
            self._closers[key] = close

    def forget(self, key: int) -> None:
        with self._lock:
            self._closers.pop(key, None)

    def stop(self, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        """Close what registered a closer, end the Trio run, join the thread."""
        token = self._token
        if token is None or not self._thread.is_alive():
            return
        stop = self._stop
        assert stop is not None
        try:
            token.run_sync_soon(stop.set)
        except trio.RunFinishedError:
            return
        self._thread.join(timeout + 5)


class _Job(Generic[T]):
    """One coroutine run for a caller in another thread: ``settle`` gets its
    outcome (called in the Trio thread; it must only hand it over)."""

    def __init__(
        self,
        afn: Callable[[], Awaitable[T]],
        settle: Callable[[outcome.Outcome[T]], None],
    ) -> None:
        self.afn = afn
        self.settle = settle
        self.scope = trio.CancelScope()

    def cancel(self) -> None:
        """In the Trio thread: stop the coroutine (before or after it began)."""
        self.scope.cancel()

    async def run(self) -> None:
        with self.scope:
            result: outcome.Outcome[T] = await outcome.acapture(self.afn)
        if isinstance(result, outcome.Error) and isinstance(
            result.error, trio.Cancelled
        ):
            if not self.scope.cancel_called:
                # The portal is shutting down: tell the caller, then let the
                # cancellation go on.
                self.settle(
                    outcome.Error(RuntimeError("the stem Trio thread is stopping"))
                )
                result.unwrap()
            # The caller cancelled: an asyncio future is cancelled already,
            # a blocked thread (KeyboardInterrupt) is gone; release it anyway.
            self.settle(result)
            return
        self.settle(result)


_portal: Portal | None = None
_portal_lock = threading.Lock()


def portal() -> Portal:
    """This process's portal, started on first use (again after a fork)."""
    global _portal
    current = _portal
    if current is not None and current.pid == os.getpid() and current.alive:
        return current
    with _portal_lock:
        current = _portal
        if current is None or current.pid != os.getpid() or not current.alive:
            current = _portal = Portal()
        return current


def shutdown(timeout: float = SHUTDOWN_TIMEOUT) -> None:
    """Close every client of this process and stop its Trio thread (runs at
    interpreter exit; a later call starts a new thread)."""
    global _portal
    with _portal_lock:
        current, _portal = _portal, None
    if current is not None and current.pid == os.getpid():
        current.stop(timeout)


def _after_fork_in_child() -> None:
    global _portal, _portal_lock
    # The parent's thread does not exist here, and a lock some other thread
    # held at fork time would never be released.
    _portal = None
    _portal_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(shutdown)


class Held:
    """A ``stem.Client`` held open by a task of the portal's nursery until
    :meth:`close`."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._closing = trio.Event()
        self._done = trio.Event()
        self.error: Exception | None = None
        #: the holding task's context variables once the client is open
        #: (trio-asyncio's loop for the Redis and PostgreSQL backends)
        self._context: contextvars.Context | None = None

    @classmethod
    async def open(cls, gate: Portal, client: Any) -> Held:
        """In the Trio thread: enter ``client`` in a task of the portal's
        nursery; returns once it is open (raises what opening raised)."""
        held = cls(client)
        await gate.nursery.start(held._hold)
        return held

    async def _hold(self, *, task_status: trio.TaskStatus[None]) -> None:
        started = False
        try:
            async with self.client:
                self._context = contextvars.copy_context()
                task_status.started()
                started = True
                await self._closing.wait()
        except Exception as exc:
            if not started:
                raise
            self.error = exc
            logger.exception("a stem client held by the Trio thread failed")
        finally:
            self._done.set()

    async def call(self, afn: Callable[[], Awaitable[T]], trace: object = None) -> T:
        """In the Trio thread: await ``afn()`` in this task with the
        holding task's context variables, as if it were a child of the task
        that opened the client (backends keep per-run state there), and the
        caller's OpenTelemetry context (``trace``, from :func:`caller_trace`),
        so a publish span joins the caller's trace."""
        assert self._context is not None
        for var, value in self._context.items():
            var.set(value)
        if trace is not None:
            otel = sys.modules.get("opentelemetry.context")
            if otel is not None:  # this task's context ends with it: no detach
                otel.attach(trace)
        return await afn()

    async def close(self) -> None:
        """In the Trio thread: leave the client's block (flushing its
        writes) and wait until it is closed."""
        self._closing.set()
        await self._done.wait()


class Bridged(Generic[S]):
    """A view of a Trio object ``S``: rebuilt with ``make(client)`` from the
    owner's current ``stem.Client`` (a new one after a fork)."""

    def __init__(self, owner: Owner, make: Callable[[Any], S]) -> None:
        #: the client this view belongs to
        self.owner = owner
        self._make = make
        self._seen: object = None
        self._target: S | None = None

    def _offline(self) -> S:
        """The object for calls that do no I/O (:func:`offline`): the
        resolved one unless a view has one that needs no connection."""
        return self._resolve()[2]

    def _resolve(self) -> tuple[Portal, Held, S]:
        gate, held = self.owner._live()
        if held is not self._seen or self._target is None:
            self._target = self._make(held.client)
            self._seen = held
        return gate, held, self._target


class Owner:
    """What a view needs from its client: the portal and the live
    ``stem.Client`` held open in it (opened, or reopened after a fork, as
    the client decides)."""

    def _live(self) -> tuple[Portal, Held]:
        raise NotImplementedError


def caller_trace() -> object:
    """The calling thread's OpenTelemetry context (None when OpenTelemetry
    is not imported: nothing to carry)."""
    otel = sys.modules.get("opentelemetry.context")
    return None if otel is None else otel.get_current()


def blocking(
    fn: Callable[Concatenate[S, P], Awaitable[T]],
) -> Callable[Concatenate[Bridged[S], P], T]:
    """A view method that runs ``fn`` on the view's object in the Trio
    thread and blocks until it returns (same parameters and docstring)."""

    def call(self: Bridged[S], /, *args: P.args, **kwargs: P.kwargs) -> T:
        gate, held, target = self._resolve()
        return gate.run(
            held.call,
            functools.partial(fn, target, *args, **kwargs),
            caller_trace(),
        )

    functools.update_wrapper(call, fn)
    return call


def awaitable(
    fn: Callable[Concatenate[S, P], Awaitable[T]],
) -> Callable[Concatenate[Bridged[S], P], Awaitable[T]]:
    """A view coroutine method that runs ``fn`` on the view's object in the
    Trio thread, awaited on the caller's asyncio loop (same parameters and
    docstring)."""

    async def call(self: Bridged[S], /, *args: P.args, **kwargs: P.kwargs) -> T:
        gate, held, target = self._resolve()
        return await gate.run_async(
            held.call,
            functools.partial(fn, target, *args, **kwargs),
            caller_trace(),
        )

    functools.update_wrapper(call, fn)
    return call


def offline(
    fn: Callable[Concatenate[S, P], T],
) -> Callable[Concatenate[Bridged[S], P], T]:
    """A view method that calls the sync, I/O-free ``fn`` (``build_envelope``)
    on the view's offline object, in the caller's thread (same parameters
    and docstring)."""

    def call(self: Bridged[S], /, *args: P.args, **kwargs: P.kwargs) -> T:
        return fn(self._offline(), *args, **kwargs)

    functools.update_wrapper(call, fn)
    return call


def blocking_as(
    fn: Callable[Concatenate[S, P], Awaitable[T]],
    wrap: Callable[[Bridged[S], T], R],
) -> Callable[Concatenate[Bridged[S], P], R]:
    """:func:`blocking`, with the result passed through ``wrap(view, it)``
    (a canvas handle becomes a view of it)."""

    def call(self: Bridged[S], /, *args: P.args, **kwargs: P.kwargs) -> R:
        gate, held, target = self._resolve()
        done = gate.run(
            held.call,
            functools.partial(fn, target, *args, **kwargs),
            caller_trace(),
        )
        return wrap(self, done)

    functools.update_wrapper(call, fn)
    return call


def awaitable_as(
    fn: Callable[Concatenate[S, P], Awaitable[T]],
    wrap: Callable[[Bridged[S], T], R],
) -> Callable[Concatenate[Bridged[S], P], Awaitable[R]]:
    """:func:`awaitable`, with the result passed through ``wrap(view, it)``."""

    async def call(self: Bridged[S], /, *args: P.args, **kwargs: P.kwargs) -> R:
        gate, held, target = self._resolve()
        done = await gate.run_async(
            held.call,
            functools.partial(fn, target, *args, **kwargs),
            caller_trace(),
        )
        return wrap(self, done)

    functools.update_wrapper(call, fn)
    return call


__all__ = [
    "Bridged",
    "Held",
    "Owner",
    "Portal",
    "awaitable",
    "awaitable_as",
    "blocking",
    "blocking_as",
    "offline",
    "portal",
    "shutdown",
]
