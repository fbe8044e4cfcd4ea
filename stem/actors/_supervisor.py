"""Supervisors: start, watch and restart actors, Erlang style, on a Trio nursery."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Generic, Literal, NoReturn, TypeVar

import attrs
import trio

from ._actor import Actor, ActorRef, ActorStatistics, set_restarts
from ._mailbox import Mailbox, MailboxStatistics, Reply, check_capacity

__all__ = [
    "ChildSpec",
    "ChildStatistics",
    "StartChild",
    "StopChild",
    "Supervisor",
    "SupervisorEscalation",
    "SupervisorEvent",
    "SupervisorStatistics",
    "open_supervisor",
]

M = TypeVar("M")

RestartPolicy = Literal["permanent", "transient", "temporary"]
Strategy = Literal["one_for_one", "one_for_all"]
EventKind = Literal["started", "crashed", "restarted", "stopped", "escalated"]

logger = logging.getLogger("stem.actors.supervisor")


class SupervisorEscalation(Exception):
    """A supervisor spent its restart budget and gave up (raised out of its run)."""

    def __init__(
        self,
        message: str,
        *,
        supervisor: str,
        child: str,
        restarts: int,
        period: float,
        error: BaseException | None,
    ) -> None:
        super().__init__(message)
        self.supervisor = supervisor
        self.child = child
        self.restarts = restarts
        self.period = period
        self.error = error


def _check_capacity(_inst: object, _attr: object, value: int) -> None:
    check_capacity(value)


@attrs.frozen
class ChildSpec(Generic[M]):
    """How to run one child: ``factory`` builds a fresh actor on every (re)start.

    ``restart``: ``"permanent"`` children are always restarted, ``"transient"``
    ones only after a crash, ``"temporary"`` ones never. A ``mailbox`` given here
    is used as is (its owner keeps it across restarts of this supervisor);
    otherwise the supervisor creates one of ``mailbox_capacity``.
    """

    name: str = attrs.field(validator=attrs.validators.min_len(1))
    factory: Callable[[], Actor[M]] = attrs.field(
        validator=attrs.validators.is_callable()
    )
    restart: RestartPolicy = attrs.field(
        default="permanent",
        kw_only=True,
        validator=attrs.validators.in_(("permanent", "transient", "temporary")),
    )
    mailbox_capacity: int = attrs.field(
        default=1000, kw_only=True, validator=_check_capacity
    )
    mailbox: Mailbox[M] | None = attrs.field(default=None, kw_only=True)


@attrs.frozen(kw_only=True)
class SupervisorEvent:
    """Something that happened to a child (or to the supervisor, for escalated)."""

    kind: EventKind
    supervisor: str
    child: str
    error: BaseException | None = None
    restarts: int = 0


@attrs.frozen(kw_only=True)
class ChildStatistics:
    """A snapshot of one supervised child."""

    name: str
    state: str
    restart: RestartPolicy
    restarts: int
    mailbox: MailboxStatistics
    actor: ActorStatistics | None


@attrs.frozen(kw_only=True)
class SupervisorStatistics(ActorStatistics):
    """A snapshot of a `Supervisor` (as an actor, plus its children)."""

    strategy: Strategy
    running: bool
    total_restarts: int
    restarts_in_period: int
    children: tuple[ChildStatistics, ...]


@attrs.frozen
class StartChild:
    """Supervisor message: start ``spec``; the reply gets the child's ref."""

    spec: ChildSpec[Any]
    reply: Reply[ActorRef[Any]]


@attrs.frozen
class StopChild:
    """Supervisor message: stop the child called ``name``."""

    name: str
    reply: Reply[None]


SupervisorMessage = StartChild | StopChild


@attrs.define(eq=False)
class _Incarnation:
    actor: Actor[Any]
    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    done: trio.Event = attrs.Factory(trio.Event)


@attrs.define(eq=False)
class _Child:
    spec: ChildSpec[Any]
    mailbox: Mailbox[Any]
    state: Literal["starting", "running", "restarting", "stopped"] = "starting"
    current: _Incarnation | None = None
    restart_scope: trio.CancelScope | None = None
    restarts: int = 0
    recent: deque[float] = attrs.Factory(deque)

    @property
    def name(self) -> str:
        return self.spec.name


@attrs.frozen
class _Exit:
    child: _Child
    incarnation: _Incarnation | None
    error: Exception | None
    restart_scope: trio.CancelScope | None = None


class _StatusProxy(trio.TaskStatus[ActorRef[Any]]):
    """Forwards ``started`` and remembers that it was called."""

    def __init__(
        self, inner: trio.TaskStatus[ActorRef[Any]], on_started: Callable[[], None]
    ) -> None:
        self.inner = inner
        self.on_started = on_started
        self.called = False

    def started(self, value: ActorRef[Any] | None = None) -> None:
        if value is None:
            raise TypeError("an actor must pass its ActorRef to task_status.started")
        self.called = True
        self.on_started()
        self.inner.started(value)


def _non_negative(_inst: object, attr: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attr.name} must be >= 0, got {value!r}")


def _positive(_inst: object, attr: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attr.name} must be > 0 seconds, got {value!r}")


@attrs.define(eq=False)
class Supervisor(Actor[SupervisorMessage]):
    """Runs children in its own nursery and restarts them when they stop.

    ``one_for_one`` restarts only the child that stopped; ``one_for_all``
    cancels every child and restarts all in spec order, with their same
    mailboxes. More than ``max_restarts`` restarts within ``period`` seconds
    makes `run` raise `SupervisorEscalation`. Restarts of a child wait
    ``backoff_initial * 2**n`` seconds (at most ``backoff_max``), ``n`` being
    its restarts within the last ``period``. A child cancelled by the supervisor
    (shutdown, `stop_child`, one_for_all) is not a crash, and `trio.Cancelled`
    is never swallowed. ``children`` are started, in order, before `run` reports
    ready; a supervisor is itself an actor, so trees are built by making
    supervisors children of supervisors. Its mailbox takes `StartChild` and
    `StopChild` messages.
    """

    name: str = "supervisor"
    strategy: Strategy = attrs.field(
        default="one_for_one",
        validator=attrs.validators.in_(("one_for_one", "one_for_all")),
    )
    max_restarts: int = attrs.field(default=3, validator=_non_negative)
    period: float = attrs.field(default=5.0, validator=_positive)
    backoff_initial: float = attrs.field(default=0.1, validator=_non_negative)
    backoff_max: float = attrs.field(default=5.0, validator=_non_negative)
    on_event: Callable[[SupervisorEvent], None] | None = None
    children: Sequence[ChildSpec[Any]] = ()
    _nursery: trio.Nursery | None = attrs.field(default=None, init=False)
    _children: dict[str, _Child] = attrs.field(factory=dict, init=False)
    _restart_times: deque[float] = attrs.field(factory=deque, init=False)
    _total_restarts: int = attrs.field(default=0, init=False)
    _exits: deque[_Exit] = attrs.field(factory=deque, init=False)
    _wakeup: trio.Event = attrs.field(factory=trio.Event, init=False)
    _ended: trio.Event = attrs.field(factory=trio.Event, init=False)

    @backoff_max.validator
    def _check_backoff_max(self, _attr: object, value: float) -> None:
        if value < self.backoff_initial:
            raise ValueError(
                f"backoff_max ({value!r}) must be >= backoff_initial "
                f"({self.backoff_initial!r})"
            )

    async def run(
        self,
        mailbox: Mailbox[SupervisorMessage],
        *,
        task_status: trio.TaskStatus[ActorRef[SupervisorMessage]] = (
            trio.TASK_STATUS_IGNORED
        ),
    ) -> None:
        """Supervise until cancelled; raises `SupervisorEscalation` when it gives up.

        On cancellation every child is cancelled and `trio.Cancelled` propagates.
        """
        escalation: SupervisorEscalation | None = None
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for spec in self.children:
                    await self.start_child(spec)
                nursery.start_soon(self._serve, mailbox)
                task_status.started(ActorRef(mailbox))
                escalation = await self._supervise()
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            _raise_single(group)
        finally:
            self._nursery = None
            children = list(self._children.values())
            self._children.clear()
            for child in children:
                self._forget(child)
            self._ended.set()
        if escalation is not None:
            raise escalation from escalation.error

    async def start_child(self, spec: ChildSpec[M]) -> ActorRef[M]:
        """Start a child and return its ref once it called ``task_status.started``.

        If it fails before that, its exception is raised here and it is not
        retried. Raises `ValueError` if the name is taken.
        """
        nursery = self._running_nursery()
        if spec.name in self._children:
            raise ValueError(
                f"supervisor {self.name!r} already has a child {spec.name!r}"
            )
        mailbox = spec.mailbox or Mailbox(spec.mailbox_capacity, name=spec.name)
        child = _Child(spec=spec, mailbox=mailbox)
        self._children[spec.name] = child
        try:
            ref: ActorRef[M] = await nursery.start(self._incarnate, child, "started")
        except BaseException as exc:
            self._children.pop(spec.name, None)
            if isinstance(exc, Exception):
                self._emit("crashed", child, exc)
            raise
        return ref

    async def stop_child(self, name: str) -> None:
        """Cancel the child called ``name``, wait for it to end and forget it.

        A mailbox the supervisor created is closed, so later sends raise
        `trio.ClosedResourceError`. Raises `KeyError` for an unknown name.
        """
        child = self._children.pop(name, None)
        if child is None:
            raise KeyError(f"supervisor {self.name!r} has no child {name!r}")
        child.state = "stopped"
        if child.restart_scope is not None and self.strategy == "one_for_one":
            child.restart_scope.cancel()
        if child.current is not None:
            child.current.scope.cancel()
            await child.current.done.wait()
        self._forget(child)

    async def wait_ended(self) -> None:
        """Return once `run` has ended (cancelled, or escalated): its
        children are gone and none will be restarted."""
        await self._ended.wait()

    def statistics(self) -> SupervisorStatistics:
        """Return a frozen snapshot of this supervisor and its children."""
        own = super().statistics()
        return SupervisorStatistics(
            name=self.name,
            messages_handled=own.messages_handled,
            batches=own.batches,
            restarts=own.restarts,
            mailbox=own.mailbox,
            strategy=self.strategy,
            running=self._nursery is not None,
            total_restarts=self._total_restarts,
            restarts_in_period=(
                self._prune(self._restart_times)
                if self._nursery is not None
                else len(self._restart_times)
            ),
            children=tuple(
                ChildStatistics(
                    name=c.name,
                    state=c.state,
                    restart=c.spec.restart,
                    restarts=c.restarts,
                    mailbox=c.mailbox.statistics(),
                    actor=c.current.actor.statistics() if c.current else None,
                )
                for c in self._children.values()
            ),
        )

    # -- internals -------------------------------------------------------------

    def _forget(self, child: _Child) -> None:
        """Mark a removed child stopped, close the inbox we made, report it."""
        child.state = "stopped"
        if child.spec.mailbox is None:
            child.mailbox.close()
        self._emit("stopped", child)

    def _running_nursery(self) -> trio.Nursery:
        if self._nursery is None:
            raise RuntimeError(f"supervisor {self.name!r} is not running")
        return self._nursery

    def _emit(
        self,
        kind: EventKind,
        child: _Child,
        error: BaseException | None = None,
    ) -> None:
        _log_event(self.name, kind, child, error)
        if self.on_event is None:
            return
        event = SupervisorEvent(
            kind=kind,
            supervisor=self.name,
            child=child.name,
            error=error,
            restarts=child.restarts,
        )
        try:
            self.on_event(event)
        except Exception:
            logger.exception("on_event of supervisor %r failed on %r", self.name, event)

    async def _incarnate(
        self,
        child: _Child,
        kind: EventKind,
        *,
        task_status: trio.TaskStatus[ActorRef[Any]],
    ) -> None:
        """Run one incarnation; errors before started() go to nursery.start."""
        incarnation = _Incarnation(actor=child.spec.factory())
        set_restarts(incarnation.actor, child.restarts)
        child.current = incarnation

        def on_started() -> None:
            child.state = "running"
            child.restart_scope = None
            self._emit(kind, child)

        status = _StatusProxy(task_status, on_started)
        try:
            with incarnation.scope:
                try:
                    await incarnation.actor.run(child.mailbox, task_status=status)
                except Exception as exc:
                    if not status.called:
                        raise
                    self._report(_Exit(child, incarnation, exc))
                else:
                    if status.called:
                        self._report(_Exit(child, incarnation, None))
        finally:
            incarnation.done.set()

    def _report(self, exit_: _Exit) -> None:
        self._exits.append(exit_)
        self._wakeup.set()

    async def _supervise(self) -> SupervisorEscalation:
        while True:
            while self._exits:
                escalation = self._handle_exit(self._exits.popleft())
                if escalation is not None:
                    return escalation
            self._wakeup = trio.Event()
            await self._wakeup.wait()

    def _is_current(self, exit_: _Exit) -> bool:
        child = exit_.child
        if self._children.get(child.name) is not child:
            return False
        if exit_.incarnation is not None:
            return child.state == "running" and child.current is exit_.incarnation
        scope = exit_.restart_scope
        return (
            child.state == "restarting"
            and child.restart_scope is scope
            and scope is not None
            and not scope.cancel_called
        )

    def _handle_exit(self, exit_: _Exit) -> SupervisorEscalation | None:
        if not self._is_current(exit_):
            return None
        child, error = exit_.child, exit_.error
        if error is not None:
            self._emit("crashed", child, error)
        policy = child.spec.restart
        if policy == "temporary" or (policy == "transient" and error is None):
            del self._children[child.name]
            self._forget(child)
            return None
        now = trio.current_time()
        in_period = self._prune(self._restart_times, now)
        if in_period >= self.max_restarts:
            message = (
                f"supervisor {self.name!r} gave up: child {child.name!r} stopped "
                f"after {in_period} restarts within {self.period} s "
                f"(max_restarts={self.max_restarts}); last error: "
                + (repr(error) if error is not None else "none, it returned")
            )
            self._emit("escalated", child, error)
            return SupervisorEscalation(
                message,
                supervisor=self.name,
                child=child.name,
                restarts=in_period,
                period=self.period,
                error=error,
            )
        self._restart_times.append(now)
        self._total_restarts += 1
        delay = min(
            self.backoff_initial * 2 ** self._prune(child.recent, now),
            self.backoff_max,
        )
        child.recent.append(now)
        if self.strategy == "one_for_all":
            group = [
                c
                for c in self._children.values()
                if c.state in ("running", "restarting")
            ]
        else:
            group = [child]
        scope = trio.CancelScope()
        for member in group:
            if member.restart_scope is not None:
                member.restart_scope.cancel()
            if member.current is not None:
                member.current.scope.cancel()
            member.state = "restarting"
            member.restart_scope = scope
        self._running_nursery().start_soon(self._restart, group, delay, scope)
        return None

    def _prune(self, times: deque[float], now: float | None = None) -> int:
        now = trio.current_time() if now is None else now
        while times and times[0] <= now - self.period:
            times.popleft()
        return len(times)

    async def _restart(
        self, group: list[_Child], delay: float, scope: trio.CancelScope
    ) -> None:
        nursery = self._running_nursery()
        with scope:
            for child in group:
                if child.current is not None:
                    await child.current.done.wait()
            await trio.sleep(delay)
            for child in group:
                if child.state != "restarting" or child.restart_scope is not scope:
                    continue
                child.restarts += 1
                try:
                    await nursery.start(self._incarnate, child, "restarted")
                except Exception as exc:
                    self._report(_Exit(child, None, exc, scope))
                    return

    async def handle(self, msg: SupervisorMessage) -> None:
        """Serve a control message; errors go to its reply, never crash us."""
        match msg:
            case StartChild(spec=spec, reply=reply):
                try:
                    ref = await self.start_child(spec)
                except Exception as exc:
                    reply.fail(exc)
                else:
                    reply.send(ref)
            case StopChild(name=name, reply=reply):
                try:
                    await self.stop_child(name)
                except Exception as exc:
                    reply.fail(exc)
                else:
                    reply.send(None)


def _log_event(
    supervisor: str, kind: EventKind, child: _Child, error: BaseException | None
) -> None:
    """Crashes and escalations are logged (with the traceback), restarts too:
    a supervisor never hides that a child died."""
    if kind == "crashed":
        logger.error(
            "actor %r crashed (supervisor %r, %d restarts so far): %r",
            child.name,
            supervisor,
            child.restarts,
            error,
            exc_info=error,
        )
    elif kind == "escalated":
        logger.critical(
            "supervisor %r gave up on actor %r after %d restarts: %r",
            supervisor,
            child.name,
            child.restarts,
            error,
        )
    elif kind == "restarted":
        logger.warning("actor %r restarted (restart %d)", child.name, child.restarts)


def _raise_single(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Re-raise the only leaf of ``group`` (or one of only-Cancelled leaves) as is."""
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop()
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(exc.exceptions)
        else:
            leaves.append(exc)
    if len(leaves) != 1 and not all(isinstance(e, trio.Cancelled) for e in leaves):
        raise group
    leaf = leaves[0]
    raise leaf from leaf.__cause__


@asynccontextmanager
async def open_supervisor(
    name: str = "root",
    *,
    strategy: Strategy = "one_for_one",
    max_restarts: int = 3,
    period: float = 5.0,
    backoff_initial: float = 0.1,
    backoff_max: float = 5.0,
    on_event: Callable[[SupervisorEvent], None] | None = None,
    mailbox_capacity: int = 100,
) -> AsyncIterator[Supervisor]:
    """Run a `Supervisor` for the duration of the block; children are cancelled on exit.

    A `SupervisorEscalation` (or any single error from the block) is raised
    as itself, not wrapped in an exception group.
    """
    supervisor = Supervisor(
        name=name,
        strategy=strategy,
        max_restarts=max_restarts,
        period=period,
        backoff_initial=backoff_initial,
        backoff_max=backoff_max,
        on_event=on_event,
    )
    mailbox: Mailbox[SupervisorMessage] = Mailbox(mailbox_capacity, name=name)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run, mailbox)
            yield supervisor
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        _raise_single(group)
