"""``stem.asyncio.Client``: the producer and reader half of ``stem.Client``
for asyncio applications (FastAPI, aiohttp, Starlette, plain asyncio).

::

    import stem.asyncio

    async with stem.asyncio.Client("redis://localhost:6379/0") as client:
        task_id = await client.enqueue("reports.build", {"month": "2026-11"})
        result = await client.wait_for(task_id, timeout=30)

The application's loop runs as before: every call runs the ``stem.Client``
coroutine of the same name in the process's one Trio thread (shared with
``stem.BlockingClient``) and is awaited on the caller's loop, which keeps
serving meanwhile. Cancelling the awaiting task cancels the call in Trio.
docs/decisions.md ("asyncio and blocking clients") says why a Trio thread
and not Trio's guest mode.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self

from ._app import App
from ._bridge import (
    Bridged,
    Held,
    Owner,
    Portal,
    awaitable,
    awaitable_as,
    offline,
    portal,
)
from ._canvas import Kind
from ._canvas_client import Canvas, CanvasHandle
from ._client import Client as TrioClient
from ._deadletters import DeadLetters
from ._handler import TaskHandler
from ._workflow_client import Workflows


class Client(Bridged[TrioClient], Owner):
    """``stem.Client``'s producer and reader calls as asyncio coroutines.

    ``async with stem.asyncio.Client(url, app=app) as client:`` takes what
    ``stem.Client.from_url`` takes. Calls: ``enqueue``, ``publish``,
    ``build_envelope``, ``get``, ``wait_for``, ``revoke``, ``queue_stats``,
    ``queues``, ``purge``, ``workers``, ``flush``; ``canvas`` (chains,
    groups, chords and their handles), ``workflows`` and
    ``dead_letters(queue)``. Each has the parameters, return value and
    errors of the ``stem.Client`` call of the same name. Safe to use from
    several asyncio tasks (and loops in several threads) at once.
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
        super().__init__(self, lambda client: client)
        self._client = TrioClient(
            url,
            app=app,
            tasks=tasks,
            workflows=workflows,
            schedules=schedules,
            **backend_options,
        )
        self.url = url
        #: the registry (task options, routes) calls are checked against
        self.app = self._client.app
        self._held: tuple[Portal, Held] | None = None

    def _live(self) -> tuple[Portal, Held]:
        if self._held is None:
            raise RuntimeError(
                "the client is not open: use `async with stem.asyncio.Client(...)`"
            )
        return self._held

    async def __aenter__(self) -> Self:
        if self._held is not None:
            raise RuntimeError("this client is already open")
        gate = portal()
        held = await gate.run_async(Held.open, gate, self._client)
        gate.on_shutdown(id(self), held.close)
        self._held = (gate, held)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        held, self._held = self._held, None
        if held is None:
            return
        gate, opened = held
        gate.forget(id(self))
        if gate.alive:
            await gate.run_async(opened.close)

    def __repr__(self) -> str:
        return (
            f"<stem.asyncio.Client {self.url!r} ({'open' if self._held else 'closed'})>"
        )

    def _offline(self) -> TrioClient:
        return self._client

    build_envelope = offline(TrioClient.build_envelope)
    enqueue = awaitable(TrioClient.enqueue)
    publish = awaitable(TrioClient.publish)
    get = awaitable(TrioClient.get)
    wait_for = awaitable(TrioClient.wait_for)
    revoke = awaitable(TrioClient.revoke)
    queue_stats = awaitable(TrioClient.queue_stats)
    queues = awaitable(TrioClient.queues)
    purge = awaitable(TrioClient.purge)
    workers = awaitable(TrioClient.workers)
    flush = awaitable(TrioClient.flush)

    @property
    def canvas(self) -> AsyncCanvas:
        """Chains, groups and chords: ``await client.canvas.chain([...])``."""
        return AsyncCanvas(self, lambda client: client.canvas)

    @property
    def workflows(self) -> AsyncWorkflows:
        """Start, wait for, signal and cancel workflow runs."""
        return AsyncWorkflows(self, lambda client: client.workflows)

    def dead_letters(self, queue: str = "default") -> AsyncDeadLetters:
        """The dead-letter queue of ``queue`` (list, get, replay, purge)."""
        return AsyncDeadLetters(self, lambda client: client.dead_letters(queue))


class AsyncCanvasHandle(Bridged[CanvasHandle]):
    """A submitted chain, group or chord (see ``stem.CanvasHandle``):
    ``await handle.get(timeout=)``, ``result``, ``state``, ``progress``,
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

    get = awaitable(CanvasHandle.get)
    result = awaitable(CanvasHandle.result)
    state = awaitable(CanvasHandle.state)
    progress = awaitable(CanvasHandle.progress)
    results = awaitable(CanvasHandle.results)

    def __repr__(self) -> str:
        return f"<stem.asyncio.AsyncCanvasHandle {self.kind} {self.id}>"


def _handle(view: Bridged[Canvas], handle: CanvasHandle) -> AsyncCanvasHandle:
    return AsyncCanvasHandle(view.owner, handle.id, handle.kind, handle.member_ids)


class AsyncCanvas(Bridged[Canvas]):
    """``client.canvas``: ``chain``, ``group``, ``chord``, ``submit`` return
    an :class:`AsyncCanvasHandle`; ``handle(id)`` rebuilds one."""

    chain = awaitable_as(Canvas.chain, _handle)
    group = awaitable_as(Canvas.group, _handle)
    chord = awaitable_as(Canvas.chord, _handle)
    submit = awaitable_as(Canvas.submit, _handle)

    def handle(
        self, canvas_id: str, member_ids: Iterable[str] = ()
    ) -> AsyncCanvasHandle:
        return AsyncCanvasHandle(self.owner, canvas_id, None, tuple(member_ids))


class AsyncWorkflows(Bridged[Workflows]):
    """``client.workflows``: ``start``, ``get``, ``wait``, ``emit``,
    ``send``, ``cancel``, ``list``."""

    start = awaitable(Workflows.start)
    get = awaitable(Workflows.get)
    wait = awaitable(Workflows.wait)
    emit = awaitable(Workflows.emit)
    send = awaitable(Workflows.send)
    cancel = awaitable(Workflows.cancel)
    list = awaitable(Workflows.list)


class AsyncDeadLetters(Bridged[DeadLetters]):
    """A dead-letter queue: ``list``, ``get``, ``get_entry``, ``replay``,
    ``purge``, ``count``."""

    list = awaitable(DeadLetters.list)
    get = awaitable(DeadLetters.get)
    get_entry = awaitable(DeadLetters.get_entry)
    replay = awaitable(DeadLetters.replay)
    purge = awaitable(DeadLetters.purge)
    count = awaitable(DeadLetters.count)


__all__ = [
    "AsyncCanvas",
    "AsyncCanvasHandle",
    "AsyncDeadLetters",
    "AsyncWorkflows",
    "Client",
]
