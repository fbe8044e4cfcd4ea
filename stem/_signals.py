"""Lifecycle signals: names, typed payloads and the subscription registry.

Every signal has a frozen payload type. Handlers connect on an App
(``app.signals.task_failed.connect(fn)``) or a client; they may be sync or
async, run in the event bus's own tasks (never in a worker slot), and a
handler that raises is logged and counted, never breaking the worker.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, TypeVar, overload

import attrs

from ._progress import Progress
from ._result import ErrorInfo


@attrs.frozen(kw_only=True)
class Event:
    """Base of every signal payload: which signal, and when (epoch seconds).

    ``origin`` is empty for an event of this process; an event read from the
    backend's event log (another process's) carries the node that emitted it
    (``hostname:pid:id``)."""

    signal: str
    at: float
    origin: str = ""


@attrs.frozen(kw_only=True)
class PublishEvent(Event):
    task_ids: tuple[str, ...]
    names: tuple[str, ...]
    queue: str


@attrs.frozen(kw_only=True)
class TaskEvent(Event):
    task_id: str
    name: str
    queue: str
    attempt: int
    worker_id: str = ""
    error: ErrorInfo | None = None
    value: Any = None
    runtime: float | None = None  # seconds spent in the handler
    queue_wait: float | None = None  # seconds from due time to start
    retry_in: float | None = None
    reason: str = ""
    progress: Progress | None = None  # task_progress: the report stored


@attrs.frozen(kw_only=True)
class WorkerEvent(Event):
    worker_id: str
    queues: tuple[str, ...] = ()
    concurrency: int = 0
    active: int = 0
    processed: int = 0


@attrs.frozen(kw_only=True)
class ActorEvent(Event):
    supervisor: str
    child: str
    error: str | None = None
    restarts: int = 0


@attrs.frozen(kw_only=True)
class WorkflowEvent(Event):
    run_id: str
    workflow: str
    step: str | None = None
    error: ErrorInfo | None = None


@attrs.frozen(kw_only=True)
class ScheduleEvent(Event):
    entry: str
    fire_time: float
    task_id: str | None = None
    drift: float | None = None
    error: ErrorInfo | None = None


@attrs.frozen(kw_only=True)
class ControlEvent(Event):
    command: str
    worker_id: str
    request_id: str = ""
    ok: bool = True


#: signal name -> payload type
SIGNALS: Mapping[str, type[Event]] = {
    "publish_before": PublishEvent,
    "publish_after": PublishEvent,
    "task_received": TaskEvent,
    "task_prerun": TaskEvent,
    "task_postrun": TaskEvent,
    "task_progress": TaskEvent,
    "task_retry": TaskEvent,
    "task_succeeded": TaskEvent,
    "task_failed": TaskEvent,
    "task_revoked": TaskEvent,
    "task_dead_lettered": TaskEvent,
    "worker_init": WorkerEvent,
    "worker_ready": WorkerEvent,
    "worker_stopping": WorkerEvent,
    "worker_shutdown": WorkerEvent,
    "worker_heartbeat": WorkerEvent,
    "actor_started": ActorEvent,
    "actor_crashed": ActorEvent,
    "actor_restarted": ActorEvent,
    "workflow_started": WorkflowEvent,
    "workflow_suspended": WorkflowEvent,
    "workflow_resumed": WorkflowEvent,
    "workflow_completed": WorkflowEvent,
    "workflow_failed": WorkflowEvent,
    "workflow_cancelled": WorkflowEvent,
    "schedule_due": ScheduleEvent,
    "schedule_dispatched": ScheduleEvent,
    "schedule_failed": ScheduleEvent,
    "control_received": ControlEvent,
    "control_completed": ControlEvent,
}

Handler = Callable[[Any], None] | Callable[[Any], Awaitable[None]]
Filter = Callable[[Any], bool]
H = TypeVar("H", bound=Callable[..., Any])


@attrs.frozen(kw_only=True, eq=False)
class Subscription:
    """One connected handler (calling it calls the handler, so ``@connect``
    used as a bare decorator leaves the function usable)."""

    signal: str
    handler: Handler
    filter: Filter | None = None
    buffer: int = 1000
    is_async: bool = False

    def __call__(self, event: Any) -> Any:
        return self.handler(event)


def _is_async(handler: Any) -> bool:
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 - callable objects
    )


class Signal:
    """One named signal; ``connect`` a handler to it."""

    def __init__(self, registry: Signals, name: str) -> None:
        self._registry = registry
        self.name = name
        self.payload_type = SIGNALS[name]

    @overload
    def connect(
        self,
        handler: Handler,
        *,
        filter: Filter | None = None,
        buffer: int = 1000,
    ) -> Subscription: ...

    @overload
    def connect(
        self,
        handler: None = None,
        *,
        filter: Filter | None = None,
        buffer: int = 1000,
    ) -> Callable[[H], H]: ...

    def connect(
        self,
        handler: Handler | None = None,
        *,
        filter: Filter | None = None,
        buffer: int = 1000,
    ) -> Subscription | Callable[[H], H]:
        """Call ``handler(event)`` for every event of this signal that passes
        ``filter(event)``; returns the :class:`Subscription`.

        Handlers may be sync or async; they run in the event bus's own tasks,
        never in a worker slot, one event at a time per subscription. Up to
        ``buffer`` events wait for a slow handler; more are dropped and
        counted (``client.bus.statistics()``). A handler or filter that raises
        is logged and counted; the emitter never sees it.

        Without ``handler`` it is a decorator:
        ``@app.signals.task_failed.connect(filter=lambda e: e.queue == "mail")``
        (it returns the function unchanged).
        """
        if filter is not None and not callable(filter):
            raise TypeError(f"signal filter must be callable, got {filter!r}")
        if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1:
            raise ValueError(f"buffer must be an int >= 1, got {buffer!r}")
        if handler is None:

            def decorator(fn: H) -> H:
                self.connect(fn, filter=filter, buffer=buffer)
                return fn

            return decorator
        if not callable(handler):
            raise TypeError(f"signal handler must be callable, got {handler!r}")
        sub = Subscription(
            signal=self.name,
            handler=handler,
            filter=filter,
            buffer=buffer,
            is_async=_is_async(handler),
        )
        self._registry._add(sub)
        return sub

    def disconnect(self, sub: Subscription | Handler) -> None:
        """Stop delivering to ``sub`` (a Subscription, or a handler: every
        subscription of that handler to this signal)."""
        if isinstance(sub, Subscription):
            self._registry._remove(sub)
            return
        for found in list(self._registry._subs.get(self.name, [])):
            if found.handler is sub:
                self._registry._remove(found)

    def subscriptions(self) -> list[Subscription]:
        return list(self._registry._subs.get(self.name, []))

    def __repr__(self) -> str:
        return f"<Signal {self.name}>"


class Signals:
    """All signals of an App: ``signals.task_failed.connect(fn)``."""

    def __init__(self) -> None:
        self._subs: dict[str, list[Subscription]] = {}
        self._listeners: list[Callable[[Subscription, bool], None]] = []
        for name in SIGNALS:
            setattr(self, name, Signal(self, name))

    def __getattr__(
        self, name: str
    ) -> Signal:  # for type checkers; real ones set above
        raise AttributeError(f"no signal named {name!r}; known: {', '.join(SIGNALS)}")

    def signal(self, name: str) -> Signal:
        if name not in SIGNALS:
            raise ValueError(f"no signal named {name!r}; known: {', '.join(SIGNALS)}")
        sig: Signal = getattr(self, name)
        return sig

    def connect(self, name: str, handler: Handler, **kw: Any) -> Subscription:
        return self.signal(name).connect(handler, **kw)

    def subscriptions(self) -> Iterator[Subscription]:
        for subs in self._subs.values():
            yield from subs

    def _add(self, sub: Subscription) -> None:
        self._subs.setdefault(sub.signal, []).append(sub)
        for listener in list(self._listeners):
            listener(sub, True)

    def _remove(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.signal, [])
        if sub in subs:
            subs.remove(sub)
            for listener in list(self._listeners):
                listener(sub, False)

    def watch_subscriptions(
        self, listener: Callable[[Subscription, bool], None]
    ) -> None:
        """Call ``listener(subscription, added)`` whenever a receiver is
        connected or disconnected (the event bus follows them this way)."""
        self._listeners.append(listener)

    def unwatch_subscriptions(
        self, listener: Callable[[Subscription, bool], None]
    ) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)
