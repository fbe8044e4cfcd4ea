"""``stem.BlockingClient``: the producer and reader half of ``stem.Client``
as plain methods, for Django, Flask, scripts and notebooks.

Every call runs the ``stem.Client`` coroutine of the same name in this
process's one Trio thread (``stem._bridge``) and blocks until it returns.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self

from ._app import App
from ._bridge import (
    Bridged,
    Held,
    Owner,
    Portal,
    blocking,
    blocking_as,
    offline,
    portal,
)
from ._canvas import Kind
from ._canvas_client import Canvas, CanvasHandle
from ._client import Client
from ._deadletters import DeadLetters
from ._handler import TaskHandler
from ._workflow_client import Workflows


class BlockingClient(Bridged[Client], Owner):
    """``stem.Client``'s producer and reader calls, blocking, thread-safe.

    ``BlockingClient(url, app=app)`` takes what ``stem.Client.from_url``
    takes and connects on first use (so a module-level client opens nothing
    at import, nor in a pre-fork master). All instances of a process share
    one background Trio thread; any number of threads may call one client at
    once. After ``os.fork`` (gunicorn, uwsgi) the child's first call opens a
    new Trio thread and new connections; the parent keeps its own. Open
    clients are closed (their writes flushed) at interpreter exit, or by
    :meth:`close` / leaving ``with``.

    Calls: ``enqueue``, ``publish``, ``build_envelope``, ``get``,
    ``wait_for``, ``revoke``, ``queue_stats``, ``queues``, ``purge``,
    ``workers``, ``flush``; ``canvas`` (chains, groups, chords and their
    handles), ``workflows`` and ``dead_letters(queue)`` as blocking views.
    Each has the parameters, return value and errors of the ``stem.Client``
    call of the same name. Calling it from inside a Trio run raises
    RuntimeError (use ``stem.Client`` there). Workers run in ``stem worker``.
    """

    def __init__(
        self,
        url: str = "memory://",
        *,
        app: App | None = None,
        tasks: Iterable[TaskHandler[Any]] | None = None,
        workflows: Iterable[Any] | None = None,
        schedules: Iterable[Any] | None = None,
        **backend_options: Any,
    ) -> None:
        template = Client(
            url,
            app=app,
            tasks=tasks,
            workflows=workflows,
            schedules=schedules,
            **backend_options,
        )
        super().__init__(self, lambda client: client)
        self.url = url
        #: the registry (task options, routes) calls are checked against
        self.app = template.app
        self._template = template  # never opened: build_envelope needs no I/O
        self._options = backend_options
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._held: tuple[Portal, Held] | None = None
        self._closed = False

    def _live(self) -> tuple[Portal, Held]:
        if self._pid != os.getpid():  # forked: this process has none of it
            self._pid = os.getpid()
            self._lock = threading.Lock()
            self._held = None
        held = self._held
        if held is None:
            with self._lock:
                if self._closed:
                    raise RuntimeError("this stem.BlockingClient is closed")
                held = self._held
                if held is None:
                    gate = portal()
                    client = Client(self.url, app=self.app, **self._options)
                    opened = gate.run(Held.open, gate, client)
                    gate.on_shutdown(id(self), opened.close)
                    held = self._held = (gate, opened)
        return held

    def open(self) -> Self:
        """Connect now (the first call connects anyway); returns self.
        Raises what opening the backend raises (e.g. BrokerUnavailable)."""
        self._live()
        return self

    def close(self) -> None:
        """Flush this client's writes and close its connections (in this
        process). Later calls raise RuntimeError."""
        with self._lock:
            self._closed = True
            held, self._held = self._held, None
        if held is None or self._pid != os.getpid():
            return
        gate, opened = held
        gate.forget(id(self))
        if gate.alive:
            gate.run(opened.close)

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._held else "idle"
        return f"<stem.BlockingClient {self.url!r} ({state})>"

    def _offline(self) -> Client:
        return self._template

    build_envelope = offline(Client.build_envelope)
    enqueue = blocking(Client.enqueue)
    publish = blocking(Client.publish)
    get = blocking(Client.get)
    wait_for = blocking(Client.wait_for)
    revoke = blocking(Client.revoke)
    queue_stats = blocking(Client.queue_stats)
    queues = blocking(Client.queues)
    purge = blocking(Client.purge)
    workers = blocking(Client.workers)
    flush = blocking(Client.flush)

    @property
    def canvas(self) -> BlockingCanvas:
        """Chains, groups and chords: ``client.canvas.chain([...])``."""
        return BlockingCanvas(self, lambda client: client.canvas)

    @property
    def workflows(self) -> BlockingWorkflows:
        """Start, wait for, signal and cancel workflow runs."""
        return BlockingWorkflows(self, lambda client: client.workflows)

    def dead_letters(self, queue: str = "default") -> BlockingDeadLetters:
        """The dead-letter queue of ``queue`` (list, get, replay, purge)."""
        return BlockingDeadLetters(self, lambda client: client.dead_letters(queue))


class BlockingCanvasHandle(Bridged[CanvasHandle]):
    """A submitted chain, group or chord, blocking (see
    ``stem.CanvasHandle``): ``get``, ``result``, ``state``, ``progress``,
    ``results``."""

    def __init__(
        self, owner: Owner, id: str, kind: Kind | None, member_ids: tuple[str, ...]
    ) -> None:
        super().__init__(
            owner,
            lambda client: CanvasHandle(
                id=id, kind=kind, member_ids=member_ids, client=client
            ),
        )
        self.id = id
        self.kind = kind
        self.member_ids = member_ids

    get = blocking(CanvasHandle.get)
    result = blocking(CanvasHandle.result)
    state = blocking(CanvasHandle.state)
    progress = blocking(CanvasHandle.progress)
    results = blocking(CanvasHandle.results)

    def __repr__(self) -> str:
        return f"<stem.BlockingCanvasHandle {self.kind} {self.id}>"


def _handle(view: Bridged[Canvas], handle: CanvasHandle) -> BlockingCanvasHandle:
    return BlockingCanvasHandle(view.owner, handle.id, handle.kind, handle.member_ids)


class BlockingCanvas(Bridged[Canvas]):
    """``client.canvas``, blocking: ``chain``, ``group``, ``chord``,
    ``submit`` return a :class:`BlockingCanvasHandle`; ``handle(id)``
    rebuilds one for a canvas submitted elsewhere."""

    chain = blocking_as(Canvas.chain, _handle)
    group = blocking_as(Canvas.group, _handle)
    chord = blocking_as(Canvas.chord, _handle)
    submit = blocking_as(Canvas.submit, _handle)

    def handle(
        self, canvas_id: str, member_ids: Iterable[str] = ()
    ) -> BlockingCanvasHandle:
        return BlockingCanvasHandle(self.owner, canvas_id, None, tuple(member_ids))


class BlockingWorkflows(Bridged[Workflows]):
    """``client.workflows``, blocking: ``start``, ``get``, ``wait``,
    ``emit``, ``send``, ``cancel``, ``list``."""

    start = blocking(Workflows.start)
    get = blocking(Workflows.get)
    wait = blocking(Workflows.wait)
    emit = blocking(Workflows.emit)
    send = blocking(Workflows.send)
    cancel = blocking(Workflows.cancel)
    list = blocking(Workflows.list)


class BlockingDeadLetters(Bridged[DeadLetters]):
    """A dead-letter queue, blocking: ``list``, ``get``, ``get_entry``,
    ``replay``, ``purge``, ``count``."""

    list = blocking(DeadLetters.list)
    get = blocking(DeadLetters.get)
    get_entry = blocking(DeadLetters.get_entry)
    replay = blocking(DeadLetters.replay)
    purge = blocking(DeadLetters.purge)
    count = blocking(DeadLetters.count)


__all__ = [
    "BlockingCanvas",
    "BlockingCanvasHandle",
    "BlockingClient",
    "BlockingDeadLetters",
    "BlockingWorkflows",
]
