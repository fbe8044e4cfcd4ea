"""The Client: the one object a user holds.

``async with stem.Client.from_url(url, tasks=[...]) as client:`` opens the
backend and starts the runtime's actors (broker writer, event bus) under one
supervisor in the client's nursery; ``client.worker()`` adds a Worker.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Sequence,
)
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import attrs
import trio

from ._app import App, coerce_app
from ._call import make_envelope
from ._canvas_client import Canvas
from ._clock import now
from ._codec import (
    DEFAULT_MAX_MESSAGE_BYTES,
)
from ._deadletters import DeadLetters
from ._durations import Duration, to_seconds
from ._envelope import Envelope
from ._errors import WaitTimeout
from ._eventstream import open_event_stream, shared_event_log, start_relay
from ._handler import TaskHandler
from ._ids import check_id
from ._instrument import Instrumentation, default_instrumentation
from ._node import ClientNode
from ._options import check_queue_name
from ._result import TaskResult
from ._signals import ActorEvent, PublishEvent, TaskEvent
from ._states import TaskState
from ._taskquery import operator_meta
from ._urls import open_backend
from ._workerconfig import WorkerConfig
from ._workflow import registry
from ._workflow_client import Workflows
from .actors import (
    ActorRef,
    ChildSpec,
    Mailbox,
    SupervisorEvent,
    open_supervisor,
)
from .actors._beat import BeatHandle, open_beat
from .actors._broker import (
    BrokerActor,
    BrokerMessage,
    Enqueue,
    FinishHook,
    Flush,
    StoreResults,
)
from .actors._canvas import CanvasHook, CanvasMessage, start_canvas
from .actors._control import RemoteControl
from .actors._eventbus import EventBus
from .actors._eventrelay import node_origin
from .actors._worker import Stop, Worker, WorkerState
from .actors._workflow import workflow_finish_hook
from .contracts import Backend, EventStore, QueueStats, Revocation, WorkerInfo

logger = logging.getLogger("stem.client")

_UNIQUE_DEFAULT_TTL = 3600.0
_ACTOR_SIGNALS = {
    "started": "actor_started",
    "crashed": "actor_crashed",
    "restarted": "actor_restarted",
}


class Client:
    """Enqueue tasks, wait for results, run workers.

    Use as an async context manager; the runtime (supervised actors) lives in
    the client's nursery and stops when the block exits.
    """

    def __init__(
        self,
        url: str = "memory://",
        *,
        app: App | None = None,
        tasks: Iterable[TaskHandler[Any]] | None = None,
        workflows: Iterable[Any] | None = None,
        schedules: Iterable[Any] | None = None,
        backend: Backend | None = None,
        instrumentation: Instrumentation | None = None,
        max_message_bytes: int | None = DEFAULT_MAX_MESSAGE_BYTES,
        **backend_options: Any,
    ) -> None:
        self.app = coerce_app(app, tasks, workflows, schedules)
        if max_message_bytes is not None and (
            isinstance(max_message_bytes, bool)
            or not isinstance(max_message_bytes, int)
            or max_message_bytes < 1
        ):
            raise ValueError(
                "max_message_bytes must be an int >= 1 (or None: no limit), "
                f"got {max_message_bytes!r}"
            )
        #: the largest message this client enqueues (EncodeError beyond it);
        #: its workers run nothing larger unless their config says otherwise
        self.max_message_bytes = max_message_bytes
        #: tracing/metrics hooks; OpenTelemetry when its global provider is set
        self.instrumentation = (
            instrumentation
            if instrumentation is not None
            else default_instrumentation()
        )
        #: run by the broker actor on every batch of finished deliveries
        #: (canvas continuations, workflow wake-ups); see actors._broker.FinishHook
        self._finish_hooks: list[FinishHook] = []
        self.url = url
        self._backend_options = backend_options
        self._given_backend = backend
        self._backend: Backend | None = backend
        self._stack: AsyncExitStack | None = None
        self._nursery: trio.Nursery | None = None
        self._broker_ref: ActorRef[BrokerMessage] | None = None
        self._broker_actor: BrokerActor | None = None
        self._bus: EventBus | None = None
        self._workers: list[Worker] = []
        self._node: ClientNode | None = None
        #: names this process in the event log (``Event.origin``)
        self.origin = node_origin()
        self._canvas: tuple[ActorRef[CanvasMessage], CanvasHook] | None = None
        self._workflows_api: Workflows | None = None
        self._workflow_hook: FinishHook | None = None

    # -- construction -------------------------------------------------------

    @classmethod
    def in_memory(
        cls,
        *,
        app: App | None = None,
        tasks: Iterable[TaskHandler[Any]] | None = None,
        workflows: Iterable[Any] | None = None,
        schedules: Iterable[Any] | None = None,
        max_message_bytes: int | None = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> Client:
        """A client on a fresh in-memory backend (one process, nothing kept)."""
        return cls(
            "memory://",
            app=app,
            tasks=tasks,
            workflows=workflows,
            schedules=schedules,
            max_message_bytes=max_message_bytes,
        )

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        app: App | None = None,
        tasks: Iterable[TaskHandler[Any]] | None = None,
        workflows: Iterable[Any] | None = None,
        schedules: Iterable[Any] | None = None,
        **backend_options: Any,
    ) -> Client:
        """A client on the backend named by ``url``: ``memory://``,
        ``sqlite:///stem.db``, ``redis://host:6379/0``, ``postgresql://...``."""
        return cls(
            url,
            app=app,
            tasks=tasks,
            workflows=workflows,
            schedules=schedules,
            **backend_options,
        )

    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise RuntimeError("this client is already open")
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            if self._given_backend is None:
                self._backend = await stack.enter_async_context(
                    open_backend(self.url, **self._backend_options)
                )
            self._nursery = await stack.enter_async_context(trio.open_nursery())
            self._bus = EventBus(signals=self.app.signals)
            await self._nursery.start(self._bus.run)
            watch = getattr(self.instrumentation, "watch", None)
            if watch is not None:  # metrics fed by signals (revoked, dead letters)
                watch(self.app.signals)
            supervisor = await stack.enter_async_context(
                open_supervisor(
                    "stem",
                    max_restarts=10,
                    period=60.0,
                    on_event=self._on_actor_event,
                )
            )
            self._node = ClientNode(self, supervisor)
            backend = self.backend
            mailbox: Mailbox[BrokerMessage] = Mailbox(10_000, name="broker")
            self._broker_ref = await supervisor.start_child(
                ChildSpec(
                    "broker",
                    lambda: BrokerActor(backend, hooks=self._finish_hooks),
                    mailbox=mailbox,
                )
            )
            self._canvas = await start_canvas(self._node)
        except BaseException:
            await stack.__aexit__(None, None, None)
            raise
        self._stack = stack
        return self

    def _on_actor_event(self, event: SupervisorEvent) -> None:
        signal = _ACTOR_SIGNALS.get(event.kind)
        if signal is None or self._bus is None or not self._bus.wants(signal):
            return
        self._bus.emit(
            ActorEvent(
                signal=signal,
                at=now(),
                supervisor=event.supervisor,
                child=event.child,
                error=repr(event.error) if event.error is not None else None,
                restarts=event.restarts,
            )
        )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        stack, self._stack = self._stack, None
        assert stack is not None
        try:
            if self._broker_ref is not None and exc_type is None:
                await self.flush()
                if self._bus is not None:
                    await self._bus.drain()
        finally:
            if self._nursery is not None:
                # The supervisor (entered last) stops its children first;
                # this ends the event bus when the stack reaches the nursery.
                self._nursery.cancel_scope.cancel()
            result = await stack.__aexit__(exc_type, exc, tb)
            self._nursery = None
            self._node = None
            self._broker_ref = None
            self._canvas = None
        return result

    # -- properties ---------------------------------------------------------

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            raise RuntimeError("the client is not open: use `async with client:`")
        return self._backend

    @property
    def bus(self) -> EventBus:
        if self._bus is None:
            raise RuntimeError("the client is not open: use `async with client:`")
        return self._bus

    @property
    def control(self) -> RemoteControl:
        """Remote control of live workers: ``await client.control.ping()``
        (see docs/reliability.md)."""
        return RemoteControl(self.backend, self.app.signing)

    @property
    def canvas(self) -> Canvas:
        """Chains, groups and chords: ``await client.canvas.chain([...])``."""
        return Canvas(self, self._canvas_ref())

    def _canvas_ref(self) -> ActorRef[CanvasMessage]:
        if self._canvas is None:
            raise RuntimeError("the client is not open: use `async with client:`")
        return self._canvas[0]

    @property
    def _broker(self) -> ActorRef[BrokerMessage]:
        if self._broker_ref is None:
            raise RuntimeError("the client is not open: use `async with client:`")
        return self._broker_ref

    # -- enqueueing ---------------------------------------------------------

    def build_envelope(
        self,
        name: str,
        args: dict[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        countdown: Duration | None = None,
        eta: datetime | None = None,
        expires: Duration | datetime | None = None,
        task_id: str | None = None,
        unique_key: str | None = None,
        headers: dict[str, str] | None = None,
        max_retries: int | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Envelope:
        """Validate a call and build its envelope (nothing is written).

        Raises EncodeError (naming the argument) for args that cannot be
        encoded, ValueError/TypeError for invalid options.
        """
        return make_envelope(
            self.app,
            name,
            args,
            max_message_bytes=self.max_message_bytes,
            queue=queue,
            priority=priority,
            countdown=countdown,
            eta=eta,
            expires=expires,
            task_id=task_id,
            unique_key=unique_key,
            headers=headers,
            max_retries=max_retries,
            meta=meta,
        )

    async def enqueue(
        self,
        name: str,
        args: dict[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        countdown: Duration | None = None,
        eta: datetime | None = None,
        expires: Duration | datetime | None = None,
        task_id: str | None = None,
        unique_key: str | None = None,
        headers: dict[str, str] | None = None,
        max_retries: int | None = None,
    ) -> str:
        """Queue a call of task ``name``; returns the task id once it is stored.

        Arguments that cannot be encoded raise EncodeError before anything is
        written. With ``unique_key`` (or a task with ``unique=True``) a
        duplicate of a live task returns the existing task's id instead.
        A ``task_id`` that is already known (queued, running, waiting for a
        retry, or finished within its result TTL) queues nothing and returns
        that id: producers retrying with the same id are idempotent, also
        when they race (the backend decides atomically).
        """
        env = self.build_envelope(
            name,
            args,
            queue=queue,
            priority=priority,
            countdown=countdown,
            eta=eta,
            expires=expires,
            task_id=task_id,
            unique_key=unique_key,
            headers=headers,
            max_retries=max_retries,
        )
        ids = await self.publish([env])
        return ids[0]

    async def publish(self, envelopes: Sequence[Envelope]) -> list[str]:
        """Store envelopes (built with :meth:`build_envelope`) in one batch.

        Returns their ids, or for unique tasks the id of the live duplicate.
        An envelope whose task id is already known is not queued again.
        """
        ids: list[str] = []
        fresh: list[Envelope] = []
        results = self.backend.results
        for env in envelopes:
            key = env.meta.get("unique_key")
            if key is not None:
                handler = self.app.find_task(env.name)
                ttl = (
                    handler.task_options.unique_for
                    if handler is not None
                    and handler.task_options.unique_for is not None
                    else _UNIQUE_DEFAULT_TTL
                )
                holder = await results.reserve_unique(key, env.id, ttl=ttl)
                if holder != env.id and await self._finished(holder):
                    # The holder is done but its key not released yet (the
                    # broker actor frees it just after storing the result).
                    await results.release_unique(key, holder)
                    holder = await results.reserve_unique(key, env.id, ttl=ttl)
                if holder != env.id:
                    ids.append(holder)
                    continue
            ids.append(env.id)
            fresh.append(env)
        if not fresh:
            return ids
        queued = tuple(
            TaskResult(
                task_id=env.id,
                state=TaskState.QUEUED,
                attempt=env.attempt,
                name=env.name,
                queue=env.queue,
                updated_at=env.enqueued_at,
                meta={**operator_meta(env.args, env.headers), **_unique_meta(env)},
            )
            for env in fresh
        )
        fresh = list(self.instrumentation.on_publish(fresh))
        bus = self.bus
        if bus.wants("publish_before"):
            bus.emit(_publish_event("publish_before", fresh))
        try:
            flags: list[bool] = await self._broker.ask(
                lambda reply: Enqueue(
                    envelopes=tuple(fresh), results=queued, reply=reply
                ),
                timeout=60,
            )
        except BaseException:
            for env in fresh:
                key = env.meta.get("unique_key")
                if key is not None:
                    with trio.CancelScope(shield=True):
                        await results.release_unique(key, env.id)
            raise
        created = [env for env, ok in zip(fresh, flags, strict=True) if ok]
        if len(created) < len(fresh):
            await self._release_known(
                [env for env, ok in zip(fresh, flags, strict=True) if not ok]
            )
        if created:
            self.instrumentation.published(created)
            if bus.wants("publish_after"):
                bus.emit(_publish_event("publish_after", created))
        return ids

    async def _release_known(self, envelopes: Sequence[Envelope]) -> None:
        """Envelopes not queued because their task id was known: a unique key
        reserved for one is freed unless that task is still live (then it
        holds the key itself)."""
        results = self.backend.results
        for env in envelopes:
            key = env.meta.get("unique_key")
            if key is None:
                continue
            current = await results.get(env.id)
            if current is None or current.is_terminal:
                await results.release_unique(key, env.id)

    async def _finished(self, task_id: str) -> bool:
        result = await self.backend.results.get(task_id)
        return result is not None and result.is_terminal

    async def flush(self) -> None:
        """Wait until every write sent so far (results, acks) is stored."""
        await self._broker.ask(lambda reply: Flush(reply=reply), timeout=60)

    # -- results ------------------------------------------------------------

    async def get(self, task_id: str) -> TaskResult | None:
        """What is known about ``task_id`` (None for an unknown or expired id)."""
        return await self.backend.results.get(task_id)

    async def wait_for(
        self, task_id: str, timeout: Duration | None = None
    ) -> TaskResult:
        """Wait for the task to reach a terminal state and return its result.

        It returns for every terminal state (check ``result.state``); it raises
        WaitTimeout when ``timeout`` seconds pass first. Woken by the backend,
        across processes where the backend is shared.
        """
        limit = float("inf") if timeout is None else to_seconds(timeout, name="timeout")
        deadline = trio.current_time() + limit
        while True:
            remaining = deadline - trio.current_time()
            if remaining <= 0:
                raise WaitTimeout(f"task {task_id} did not finish within {limit} s")
            # Wait in slices so an infinite timeout still re-checks occasionally.
            result = await self.backend.results.wait(
                task_id, timeout=min(remaining, 3600.0)
            )
            if result is not None and result.is_terminal:
                return result

    # -- control ------------------------------------------------------------

    async def revoke(
        self,
        task_id: str,
        *,
        terminate: bool = False,
        reason: str = "revoked",
        expires: Duration = 86400.0,
    ) -> None:
        """A queued or delayed task never runs and ends REVOKED, and its
        waiting message is deleted from its queue; with ``terminate`` a
        running attempt is cancelled too. The order persists for ``expires``
        seconds (workers restarted meanwhile honour it).
        ValueError for an empty id (or one with control characters)."""
        check_id(task_id)
        await self.backend.revocations.revoke(
            Revocation(
                task_id=task_id,
                terminate=terminate,
                reason=reason,
                expires_at=now() + to_seconds(expires, name="expires"),
            )
        )
        if terminate and self.backend.capabilities.broadcast:
            # Running attempts stop now, not at the workers' next poll.
            await self.control.send(
                "revoke", {"task_id": task_id, "terminate": True, "reason": reason}
            )
        current = await self.backend.results.get(task_id)
        if current is not None and current.state in (
            TaskState.QUEUED,
            TaskState.RETRYING,
        ):
            record = attrs.evolve(
                current,
                state=TaskState.REVOKED,
                updated_at=now(),
                meta={"reason": reason},
            )
            key = current.meta.get("unique_key")
            release = ((str(key), task_id),) if key is not None else ()
            # Through the BrokerActor, ordered with this node's other writes.
            await self._broker.ask(
                lambda reply: StoreResults(
                    results=(record,), release=release, reply=reply
                ),
                timeout=60,
            )
            if current.queue:
                # Its waiting message goes too, so queue depths stop counting
                # it (a copy already claimed is dropped by its worker).
                await self.backend.broker.remove(current.queue, [task_id])
            if self.bus.wants("task_revoked"):
                self.bus.emit(
                    TaskEvent(
                        signal="task_revoked",
                        at=now(),
                        task_id=task_id,
                        name=current.name,
                        queue=current.queue,
                        attempt=current.attempt,
                        reason=reason,
                    )
                )

    def dead_letters(self, queue: str = "default") -> DeadLetters:
        return DeadLetters(self, check_queue_name(queue))

    async def queue_stats(self, queue: str = "default") -> QueueStats:
        return await self.backend.broker.stats(check_queue_name(queue))

    async def queues(self) -> builtins.list[str]:
        """Names of the queues that hold or held messages."""
        return await self.backend.broker.queues()

    async def purge(self, queue: str) -> int:
        """Delete the queue's waiting tasks (not running ones); returns how many."""
        return await self.backend.broker.purge(check_queue_name(queue))

    async def workers(self) -> list[WorkerInfo]:
        """Workers with a live heartbeat."""
        return await self.backend.heartbeats.workers()

    # -- runtime ------------------------------------------------------------

    @asynccontextmanager
    async def worker(
        self,
        concurrency: int | tuple[int, int] | None = None,
        queues: Sequence[str] | str | None = None,
        *,
        config: WorkerConfig | None = None,
        **options: Any,
    ) -> AsyncIterator[Worker]:
        """Run a Worker in this client's nursery for the duration of the block.

        ``options`` are :class:`stem.WorkerConfig` fields (``prefetch``,
        ``grace_period``, ``autoscale``, ``claim_wait``, ``worker_id``, ...),
        applied over ``config`` when given; ``concurrency=(min, max)`` is
        short for ``autoscale=(min, max)``. On exit the worker stops taking
        work, lets running tasks finish within ``grace_period`` seconds and
        hands the rest back to their queues.
        """
        node = self._require_node()
        if isinstance(concurrency, tuple):  # (min, max): autoscaling
            options["autoscale"] = concurrency
        elif concurrency is not None:
            options["concurrency"] = concurrency
        if queues is not None:
            options["queues"] = [queues] if isinstance(queues, str) else queues
        if config is None:
            limit = self.max_message_bytes
            config = WorkerConfig(
                max_message_bytes=limit if limit is not None else 2**62
            )
        config = attrs.evolve(config, **options)
        for handler in self.app:
            opts = handler.task_options
            if opts.execution == "process" and handler.is_async:
                raise ValueError(
                    f"task {handler.task_name!r}: execution='process' needs a "
                    "sync (def) handler"
                )
        state = WorkerState()
        mailbox: Mailbox[Any] = Mailbox(100, name=f"worker:{config.worker_id}")
        backend, broker, bus = self.backend, self._broker, self.bus
        incarnation: list[Worker] = []

        def make_worker() -> Worker:
            incarnation[:] = [
                Worker(
                    app=self.app,
                    backend=backend,
                    broker=broker,
                    bus=bus,
                    config=config,
                    state=state,
                    producer=self,
                    instrumentation=self.instrumentation,
                )
            ]
            return incarnation[0]

        child_name = f"worker:{config.worker_id}"
        await self._start_relay(node)
        ref = await node.start_child(
            ChildSpec(
                child_name,
                make_worker,
                restart="transient",
                mailbox=mailbox,
            )
        )
        handle = incarnation[0]
        self._workers.append(handle)
        if self._canvas is not None:
            self.add_finish_hook(self._canvas[1])  # a node advances canvases
        engine_name = await self._start_workflow_engine(node, config.worker_id)
        try:
            yield handle
        finally:
            if engine_name is not None:
                with trio.CancelScope(shield=True):
                    await node.stop_engine(engine_name)
            self._workers.remove(handle)
            with trio.CancelScope(shield=True):
                ref.tell_nowait(Stop())
                with trio.move_on_after(config.grace_period + 30):
                    # A worker its supervisor gave up on never reports that it
                    # stopped: don't wait for it (the escalation goes on up).
                    if node.has_child(child_name):
                        await _first(state.stopped.wait, node.wait_ended)

    def _require_node(self) -> ClientNode:
        if self._node is None:
            raise RuntimeError("the client is not open: use `async with client:`")
        return self._node

    # -- workflows ----------------------------------------------------------

    @property
    def workflows(self) -> Workflows:
        """Start, wait for, signal and cancel workflow runs."""
        if self._workflows_api is None:
            self._workflows_api = Workflows(self._require_node())
        return self._workflows_api

    async def _start_workflow_engine(
        self, node: ClientNode, worker_id: str
    ) -> str | None:
        """Every worker node wakes workflow runs whose activities finish; one
        whose app registers workflows also runs a WorkflowEngine."""
        if self._workflow_hook is None:
            self._workflow_hook = workflow_finish_hook(node)
            self.add_finish_hook(self._workflow_hook)
        scripts = registry(self.app.workflow_versions)
        if not scripts:
            return None
        name = f"workflow-engine:{worker_id}"

        await node.start_engine(name, scripts)
        return name

    def beat(
        self, entries: Iterable[Any] | None = None, **config: Any
    ) -> AbstractAsyncContextManager[BeatHandle]:
        """``async with client.beat() as beat:`` runs the scheduler (a Beat
        actor under this client's supervisor) for the block.

        ``entries`` (default: the app's schedules) are stored or updated when
        it starts; it then fires every enabled entry in the backend's store.
        Safe to run on every node: each due tick fires once. ``config`` are
        :class:`stem.actors._beat.BeatConfig` fields (``lease_ttl``, ...).
        """
        chosen = self.app.schedules.values() if entries is None else entries
        return self._relayed(open_beat(self._require_node(), list(chosen), **config))

    @asynccontextmanager
    async def _relayed(
        self, inner: AbstractAsyncContextManager[BeatHandle]
    ) -> AsyncIterator[BeatHandle]:
        await self._start_relay(self._require_node())
        async with inner as handle:
            yield handle

    def event_log(self) -> EventStore | None:
        """The backend's event log when other processes can share it (None
        on the in-memory backend, or a backend without one)."""
        return shared_event_log(self.backend)

    async def _start_relay(self, node: ClientNode) -> None:
        """A worker or beat node relays its events to the event log (only
        while someone listens: see stem/actors/_eventrelay.py)."""
        await start_relay(node, self.bus, self.event_log(), self.origin)

    def add_finish_hook(self, hook: FinishHook) -> None:
        """Run ``hook`` on every batch of finished deliveries of this client's
        workers (see ``stem.actors._broker.FinishHook``)."""
        if hook not in self._finish_hooks:
            self._finish_hooks.append(hook)

    def events(self, *signals: str, buffer: int = 1000) -> Any:
        """``async with client.events("task_failed") as events:`` a bounded
        stream of signal payloads (all signals when none are named): this
        process's, and on a backend shared by processes (not memory) those
        that other processes' workers, beat and workflow engines relay
        (``event.origin`` names their node). Unknown names raise ValueError."""
        return open_event_stream(
            self.bus,
            self.event_log(),
            signals=signals or None,
            buffer=buffer,
            own_origin=self.origin,
        )


async def _first(*waits: Callable[[], Awaitable[object]]) -> None:
    """Return as soon as one of ``waits`` returns."""
    async with trio.open_nursery() as nursery:

        async def one(wait: Callable[[], Awaitable[object]]) -> None:
            await wait()
            nursery.cancel_scope.cancel()

        for wait in waits:
            nursery.start_soon(one, wait)


def _unique_meta(env: Envelope) -> dict[str, Any]:
    """A unique task's QUEUED record names its key (so revoke can free it)."""
    key = env.meta.get("unique_key") if env.meta else None
    return {} if key is None else {"unique_key": key}


def _publish_event(signal: str, envelopes: Sequence[Envelope]) -> PublishEvent:
    return PublishEvent(
        signal=signal,
        at=now(),
        task_ids=tuple(e.id for e in envelopes),
        names=tuple(e.name for e in envelopes),
        queue=envelopes[0].queue if envelopes else "",
    )
