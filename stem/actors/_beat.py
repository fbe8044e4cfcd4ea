"""The Beat actor: fires each due tick of each schedule entry exactly once,
however many beat instances run.

Two guards make a tick fire once:

1. A leader lease (``backend.locks``, renewed every ``lease_ttl / 3``). Only
   the holder fires; when a renewal fails, or the lease runs out before a
   renewal succeeds, firing stops at once (the firing scope is cancelled).
2. A compare-and-set of the entry's last fire (``ScheduleStore.record_fire``
   with the version the instance read), then a one-shot claim of the tick
   (``results.claim_once``): even two instances that both believe they lead
   (a paused process whose lease expired) record a tick once, and the fire's
   task id is derived from entry name and tick, so a duplicate is recognisable.

Between ticks the leader sleeps until the next due time (tick + jitter), or
until the store reports a change of the entries (``wait_changed``). A fire is
recorded before it is published: a crash between the two loses that one tick
(at most once); see docs/decisions/beat.md.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

import attrs
import trio

from stem._clock import now
from stem._errors import BrokerUnavailable
from stem._ids import new_id
from stem._result import ErrorInfo
from stem._schedule import ScheduleEntry, fire_options, tick_ms
from stem._signals import ScheduleEvent
from stem.contracts import ScheduleExists, ScheduleRecord

from ._actor import Actor, ActorRef
from ._mailbox import Mailbox, Reply
from ._supervisor import ChildSpec

if TYPE_CHECKING:
    from ._runtime import Node

logger = logging.getLogger("stem.beat")

#: How long the one-shot claim of a fired tick is kept (seconds).
TICK_CLAIM_TTL = 3600.0
#: Backoff (seconds) of a pass that failed, and of an entry set aside.
_RETRY_INITIAL = 1.0
_RETRY_MAX = 60.0
_SET_ASIDE_MAX = 600.0
#: What :meth:`Beat._consider` reports besides a wake-up time.
_FIRED = object()
_IDLE = object()


@attrs.frozen
class _Failing:
    """An entry set aside after it failed: retried at ``retry_at``, or at
    once if its ``definition`` changes."""

    definition: Mapping[str, Any]
    failures: int
    retry_at: float


@attrs.frozen(kw_only=True)
class BeatConfig:
    """How one beat instance runs. Durations are seconds."""

    lock_name: str = "stem.beat"
    lease_ttl: float = 10.0
    #: how often a follower tries to take the lease (default ``lease_ttl / 5``)
    follower_poll: float | None = None
    #: longest sleep between two looks at the entries
    max_sleep: float = 300.0
    owner: str = attrs.field(
        factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{new_id()[-12:]}"
    )

    def __attrs_post_init__(self) -> None:
        if not self.lease_ttl > 0 or not math.isfinite(self.lease_ttl):
            raise ValueError(f"lease_ttl must be > 0 seconds, got {self.lease_ttl!r}")
        if self.follower_poll is not None and not self.follower_poll > 0:
            raise ValueError(f"follower_poll must be > 0, got {self.follower_poll!r}")
        if not self.max_sleep > 0:
            raise ValueError(f"max_sleep must be > 0, got {self.max_sleep!r}")

    @property
    def renew_every(self) -> float:
        return self.lease_ttl / 3

    @property
    def poll(self) -> float:
        return self.follower_poll or self.lease_ttl / 5


# -- messages -------------------------------------------------------------


@attrs.frozen(kw_only=True, eq=False)
class AddEntry:
    """Store ``entry`` (or update its definition); replies with the record."""

    entry: ScheduleEntry
    reply: Reply[ScheduleRecord]


@attrs.frozen(kw_only=True, eq=False)
class RemoveEntry:
    """Delete the entry ``name``; replies whether it was stored."""

    name: str
    reply: Reply[bool]


@attrs.frozen(kw_only=True, eq=False)
class Stop:
    """Stop firing and give the lease back."""


@attrs.frozen(kw_only=True, eq=False)
class Inspect:
    reply: Reply[BeatStatistics]


BeatMessage = AddEntry | RemoveEntry | Stop | Inspect


@attrs.frozen(kw_only=True)
class BeatStatistics:
    owner: str
    is_leader: bool
    fired: int
    skipped: int
    conflicts: int
    failed: int
    leaderships: int
    #: passes that could not read the store (retried with backoff)
    errors: int = 0


@attrs.define(eq=False)
class BeatState:
    """What outlives one incarnation of the actor (restarts keep counting)."""

    ready: trio.Event = attrs.Factory(trio.Event)
    stop_requested: trio.Event = attrs.Factory(trio.Event)
    stopped: trio.Event = attrs.Factory(trio.Event)
    is_leader: bool = False
    fired: int = 0
    skipped: int = 0
    conflicts: int = 0
    failed: int = 0
    leaderships: int = 0
    errors: int = 0


async def register_entries(
    store: Any, entries: Sequence[ScheduleEntry]
) -> list[ScheduleRecord]:
    """Store each entry, or update a stored one whose definition differs.

    ``enabled`` is taken from the entry when it is first stored or its
    definition changes; otherwise the stored flag (the CLI's) is kept.
    Safe when many instances register the same entries at once."""
    records = []
    for entry in entries:
        definition = entry.to_dict()
        try:
            record = await store.add(entry.name, definition, enabled=entry.enabled)
        except ScheduleExists:
            current = await store.get(entry.name)
            if current is not None and dict(current.definition) == definition:
                record = current
            elif current is None:
                record = await store.add(entry.name, definition, enabled=entry.enabled)
            else:
                record = await store.update(
                    entry.name, definition=definition, enabled=entry.enabled
                )
        records.append(record)
    return records


@attrs.define(eq=False)
class _Plan:
    """What to do next for one entry."""

    record: ScheduleRecord
    entry: ScheduleEntry
    tick: float | None = None  # the tick to fire now
    wake_at: float | None = None  # when to look again (wall clock)
    skipped: bool = False


def plan(entry: ScheduleEntry, record: ScheduleRecord, at: float) -> _Plan:
    """Decide, at wall time ``at``, whether ``record``'s entry fires now.

    Pending ticks are those after the baseline (the last fire, or the last
    change of the entry) up to ``at``. Ticks at most ``misfire_grace``
    seconds old are *recent*: they fire one by one, in order, each once its
    jitter has elapsed (so a leader failover loses none). Older ticks are
    *missed*: with ``misfire="run_once"`` the latest of them fires once,
    late, unless a recent tick is pending anyway; with ``"skip"`` they are
    dropped. Either way a downtime never leaves a backlog."""
    result = _Plan(record=record, entry=entry)
    anchor = record.changed_at
    baseline = record.changed_at
    if record.last_fire is not None:
        baseline = max(baseline, record.last_fire)
    elif entry.at is not None:
        # A one-off time that passed before the entry was stored still counts.
        baseline = min(baseline, math.nextafter(entry.at.timestamp(), -math.inf))
    first = entry.next_fire(baseline, anchor=anchor)
    if first is None:
        return result
    horizon = at - entry.misfire_grace
    if first < horizon:
        recent = entry.next_fire(max(baseline, horizon), anchor=anchor)
        if entry.misfire == "run_once" and (recent is None or recent > at):
            result.tick = entry.latest_fire(baseline, horizon, anchor=anchor)
            return result
        result.skipped = True
        if recent is None:
            return result
        first = recent
    due = first + entry.jitter_offset(first)
    if first <= at and due <= at:
        result.tick = first
    else:
        result.wake_at = due
    return result


@attrs.define(eq=False)
class Beat(Actor[BeatMessage]):
    """Fires schedule entries from the backend's ScheduleStore; see the module
    docstring. ``entries`` are registered (upserted) when it starts."""

    node: Node
    config: BeatConfig
    state: BeatState
    entries: tuple[ScheduleEntry, ...] = ()
    _lease_until: float = -math.inf  # Trio time the lease surely lasts until
    _quiet_until: float = -math.inf  # Trio time the fire loop sleeps until
    _parsed: dict[str, tuple[Mapping[str, Any], ScheduleEntry | None]] = attrs.Factory(
        dict
    )
    _failing: dict[str, _Failing] = attrs.Factory(dict)

    @property
    def _store(self) -> Any:
        return self.node.backend.schedules

    async def run(
        self,
        mailbox: Mailbox[BeatMessage],
        *,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        graceful = False
        try:
            await register_entries(self._store, self.entries)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._serve_mailbox, mailbox)
                nursery.start_soon(self._lead)
                task_status.started(ActorRef(mailbox))
                self.state.ready.set()
                await self.state.stop_requested.wait()
                graceful = True
                nursery.cancel_scope.cancel()
        finally:
            was_leader = self.state.is_leader
            self.state.is_leader = False
            if graceful and was_leader:
                with trio.move_on_after(5, shield=True):
                    try:
                        await self.node.backend.locks.release(
                            self.config.lock_name, self.config.owner
                        )
                    except Exception:
                        logger.warning(
                            "beat %r: could not release the lease",
                            self.config.owner,
                            exc_info=True,
                        )
            if graceful:
                self.state.stopped.set()

    async def _serve_mailbox(self, mailbox: Mailbox[BeatMessage]) -> None:
        while True:
            try:
                msg = await mailbox.get()
            except trio.EndOfChannel:
                return
            match msg:
                case AddEntry(entry=entry, reply=reply):
                    try:
                        (record,) = await register_entries(self._store, [entry])
                    except Exception as exc:
                        reply.fail(exc)
                    else:
                        reply.send(record)
                case RemoveEntry(name=name, reply=reply):
                    try:
                        reply.send(await self._store.remove(name))
                    except Exception as exc:
                        reply.fail(exc)
                case Inspect(reply=reply):
                    reply.send(self.statistics_snapshot())
                case Stop():
                    self.state.stop_requested.set()

    def statistics_snapshot(self) -> BeatStatistics:
        s = self.state
        return BeatStatistics(
            owner=self.config.owner,
            is_leader=s.is_leader,
            fired=s.fired,
            skipped=s.skipped,
            conflicts=s.conflicts,
            failed=s.failed,
            leaderships=s.leaderships,
            errors=s.errors,
        )

    # -- leadership -----------------------------------------------------------

    async def _lead(self) -> None:
        cfg = self.config
        locks = self.node.backend.locks
        while True:
            started = trio.current_time()
            try:
                acquired = await locks.acquire(
                    cfg.lock_name, cfg.owner, ttl=cfg.lease_ttl
                )
            except BrokerUnavailable as exc:
                logger.warning(
                    "beat %r: cannot reach the lock store: %s", cfg.owner, exc
                )
                acquired = False
            if not acquired:
                await trio.sleep(cfg.poll)
                continue
            self._lease_until = started + cfg.lease_ttl
            self.state.is_leader = True
            self.state.leaderships += 1
            logger.info("beat %r leads (lease %r)", cfg.owner, cfg.lock_name)
            try:
                async with trio.open_nursery() as leading:
                    leading.start_soon(self._keep_lease, leading.cancel_scope)
                    leading.start_soon(self._fire_loop)
            finally:
                self.state.is_leader = False
                self._lease_until = -math.inf
            logger.warning("beat %r lost the lease %r", cfg.owner, cfg.lock_name)
            await trio.sleep(cfg.poll)

    async def _keep_lease(self, leading: trio.CancelScope) -> None:
        """Renew the lease; cancel ``leading`` (stop firing) once it is lost or
        may have run out.

        While the fire loop sleeps until its next due time (``_quiet_until``),
        one renewal holds the lease over that quiet time plus ``lease_ttl``,
        instead of one every ``lease_ttl / 3``: no tick is due meanwhile, so a
        follower taking over at its end, if this instance died, is as late as
        after any failover, and an idle beat wakes for nothing (a simulated
        day under MockClock costs a few hundred wake-ups, not 26,000)."""
        cfg = self.config
        locks = self.node.backend.locks
        next_renew = trio.current_time() + cfg.renew_every
        while True:
            with trio.move_on_at(self._lease_until):
                await trio.sleep_until(next_renew)
                started = trio.current_time()
                ttl = cfg.lease_ttl + max(self._quiet_until - started, 0.0)
                try:
                    held = await locks.renew(cfg.lock_name, cfg.owner, ttl=ttl)
                except BrokerUnavailable as exc:
                    logger.warning(
                        "beat %r: renewing the lease failed: %s", cfg.owner, exc
                    )
                    next_renew = trio.current_time() + min(1.0, cfg.renew_every)
                    continue
                if not held:
                    leading.cancel()
                    return
                self._lease_until = started + ttl
                next_renew = self._lease_until - cfg.lease_ttl + cfg.renew_every
                continue
            leading.cancel()  # the lease may have expired: stop at once
            return

    def _leading(self) -> bool:
        return self.state.is_leader and trio.current_time() < self._lease_until

    # -- firing ---------------------------------------------------------------

    def _entry(self, record: ScheduleRecord) -> ScheduleEntry | None:
        cached = self._parsed.get(record.name)
        if cached is not None and cached[0] == record.definition:
            return cached[1]
        try:
            entry: ScheduleEntry | None = ScheduleEntry.from_dict(
                record.definition, enabled=record.enabled
            )
        except Exception as exc:  # from_dict is total, but a row is hostile
            logger.warning(
                "schedule entry %r cannot be read and is not fired: %s",
                record.name,
                exc,
            )
            entry = None
        self._parsed[record.name] = (record.definition, entry)
        return entry

    async def _fire_loop(self) -> None:
        """Fire due ticks until the lease is lost. A pass that cannot read
        the store (backend down, a row no adapter can decode) is retried
        with backoff; it never ends beat."""
        delay = _RETRY_INITIAL
        while True:
            try:
                if not await self._fire_pass():
                    return
            except BrokerUnavailable as exc:
                logger.warning(
                    "beat %r: the schedule store is unavailable (%s); retrying in %g s",
                    self.config.owner,
                    exc,
                    delay,
                )
            except Exception:
                logger.exception(
                    "beat %r: reading the schedule entries failed; retrying in %g s",
                    self.config.owner,
                    delay,
                )
            else:
                delay = _RETRY_INITIAL
                continue
            self.state.errors += 1
            await trio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX)

    async def _fire_pass(self) -> bool:
        """Fire what is due, then wait for the next due time or a change of
        the entries. False when the lease was lost. Each entry is isolated:
        one that fails is logged and set aside (retried with backoff, or at
        once when its definition changes); the others keep firing."""
        store = self._store
        revision = await store.revision()
        records = await store.list()
        at = now()
        wake_at = at + self.config.max_sleep
        fired_any = False
        for record in records:
            failing = self._failing.get(record.name)
            if failing is not None:
                if failing.definition != record.definition:
                    del self._failing[record.name]
                elif failing.retry_at > at:
                    wake_at = min(wake_at, failing.retry_at)
                    continue
            try:
                outcome = await self._consider(record, at)
            except BrokerUnavailable:
                raise
            except Exception:
                self._set_aside(record, at)
                continue
            if outcome is None:
                return False
            if outcome is _FIRED:
                fired_any = True
                self._failing.pop(record.name, None)
            elif isinstance(outcome, float):
                wake_at = min(wake_at, outcome)
        if not fired_any:
            sleep = max(wake_at - now(), 0.0)
            self._quiet_until = trio.current_time() + sleep
            try:
                await store.wait_changed(revision, timeout=sleep)
            finally:
                self._quiet_until = -math.inf
        return True

    async def _consider(self, record: ScheduleRecord, at: float) -> object:
        """Fire ``record``'s entry if a tick is due. Returns ``_FIRED``, the
        wall time to look again (float), ``_IDLE``, or None when the lease
        was lost."""
        if not record.enabled:
            return _IDLE
        entry = self._entry(record)
        if entry is None:
            return _IDLE
        step = plan(entry, record, at)
        if step.skipped:
            self.state.skipped += 1
        if step.tick is not None:
            if not self._leading():
                return None
            await self._fire(entry, record, step.tick)
            return _FIRED
        return step.wake_at if step.wake_at is not None else _IDLE

    def _set_aside(self, record: ScheduleRecord, at: float) -> None:
        """Log a failing entry and skip it for a while (doubling)."""
        previous = self._failing.get(record.name)
        failures = 1 if previous is None else previous.failures + 1
        pause = min(_RETRY_INITIAL * 2**failures, _SET_ASIDE_MAX)
        self._failing[record.name] = _Failing(
            definition=record.definition, failures=failures, retry_at=at + pause
        )
        self.state.failed += 1
        logger.exception(
            "schedule entry %r failed (%d time(s)); the other entries keep "
            "firing, this one is retried in %g s",
            record.name,
            failures,
            pause,
        )

    async def _fire(
        self, entry: ScheduleEntry, record: ScheduleRecord, tick: float
    ) -> None:
        """Record, claim and publish one tick (shielded once recorded, so a
        lost lease cannot cut a recorded fire short)."""
        node, bus = self.node, self.node.bus
        due = tick + entry.jitter_offset(tick)
        if bus.wants("schedule_due"):
            bus.emit(_event("schedule_due", entry.name, tick, drift=now() - due))
        fired_at = now()
        # Recording and publishing are one unit, shielded: a cancellation
        # (shutdown, a lost lease) while the record is in flight could leave it
        # committed on the server with the tick never published.
        with trio.move_on_after(60, shield=True):
            done = await self._store.record_fire(
                entry.name,
                expected_version=record.version,
                tick=tick,
                fired_at=fired_at,
                owner=self.config.owner,
            )
            if done is None:
                self.state.conflicts += 1
                return
            task_id = entry.task_id(tick)
            try:
                key = f"stem.beat:{entry.name}:{tick_ms(tick)}"
                if not await node.backend.results.claim_once(
                    key, self.config.owner, ttl=TICK_CLAIM_TTL
                ):
                    self.state.conflicts += 1
                    return
                env = node.build_envelope(
                    entry.task.name,
                    dict(entry.task.args or {}),
                    task_id=task_id,
                    meta={"schedule": entry.name, "schedule_tick": tick},
                    **fire_options(entry.task.options or {}),
                )
                await node.publish([env])
            except Exception as exc:
                self.state.failed += 1
                logger.exception(
                    "schedule entry %r: fire of tick %s failed", entry.name, tick
                )
                if bus.wants("schedule_failed"):
                    bus.emit(
                        _event(
                            "schedule_failed",
                            entry.name,
                            tick,
                            task_id=task_id,
                            drift=fired_at - due,
                            error=ErrorInfo.from_exception(exc),
                        )
                    )
                return
        self.state.fired += 1
        if bus.wants("schedule_dispatched"):
            bus.emit(
                _event(
                    "schedule_dispatched",
                    entry.name,
                    tick,
                    task_id=task_id,
                    drift=fired_at - due,
                )
            )


def _event(
    signal: str,
    entry: str,
    tick: float,
    *,
    task_id: str | None = None,
    drift: float | None = None,
    error: ErrorInfo | None = None,
) -> ScheduleEvent:
    return ScheduleEvent(
        signal=signal,
        at=now(),
        entry=entry,
        fire_time=tick,
        task_id=task_id,
        drift=drift,
        error=error,
    )


@attrs.define(eq=False)
class BeatHandle:
    """What ``async with client.beat() as beat:`` gives: change entries while
    beat runs (the running beat is woken by the store) and look at it."""

    ref: ActorRef[BeatMessage]
    state: BeatState
    config: BeatConfig
    _node: Node

    @property
    def owner(self) -> str:
        """This instance's id in the leader lease."""
        return self.config.owner

    @property
    def is_leader(self) -> bool:
        return self.state.is_leader

    async def add(self, entry: ScheduleEntry) -> ScheduleRecord:
        """Store ``entry``, or update the stored entry of that name."""
        if not isinstance(entry, ScheduleEntry):
            raise TypeError(f"expected a stem.ScheduleEntry, got {entry!r}")
        return await self.ref.ask(lambda reply: AddEntry(entry=entry, reply=reply))

    async def remove(self, name: str) -> bool:
        """Delete the stored entry ``name``; False if there was none."""
        return await self.ref.ask(lambda reply: RemoveEntry(name=name, reply=reply))

    async def enable(self, name: str) -> ScheduleRecord:
        return await self._node.backend.schedules.update(name, enabled=True)

    async def disable(self, name: str) -> ScheduleRecord:
        return await self._node.backend.schedules.update(name, enabled=False)

    async def entries(self) -> list[ScheduleRecord]:
        """Every stored entry with its fire record."""
        records: list[ScheduleRecord] = await self._node.backend.schedules.list()
        return records

    async def statistics(self) -> BeatStatistics:
        return await self.ref.ask(lambda reply: Inspect(reply=reply))


def open_beat(
    node: Node, entries: Sequence[ScheduleEntry], **config: Any
) -> AbstractAsyncContextManager[BeatHandle]:
    """Run a Beat on ``node`` for the block (see ``Client.beat``). On a
    normal exit it stops firing and gives its lease back, so another
    instance takes over at once; left by an exception or a cancellation, it
    stops and its lease expires after ``lease_ttl``."""
    for entry in entries:
        if not isinstance(entry, ScheduleEntry):
            raise TypeError(f"beat entries must be stem.ScheduleEntry, got {entry!r}")
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate schedule entry names in {names}")
    return _run_beat(node, tuple(entries), BeatConfig(**config))


@asynccontextmanager
async def _run_beat(
    node: Node, entries: tuple[ScheduleEntry, ...], cfg: BeatConfig
) -> AsyncIterator[BeatHandle]:
    state = BeatState()
    mailbox: Mailbox[BeatMessage] = Mailbox(100, name=f"beat:{cfg.owner}")
    child = f"beat:{cfg.owner}"
    ref = await node.start_child(
        ChildSpec(
            child,
            lambda: Beat(node=node, config=cfg, state=state, entries=entries),
            restart="transient",
            mailbox=mailbox,
        )
    )
    try:
        yield BeatHandle(ref=ref, state=state, config=cfg, node=node)
    except BaseException:
        # Left by an error or a cancellation: stop without handing the lease
        # over (it expires after lease_ttl, as after a crash).
        with trio.CancelScope(shield=True):
            await node.stop_child(child)
        raise
    with trio.CancelScope(shield=True):
        state.stop_requested.set()
        with trio.move_on_after(10):
            await state.stopped.wait()
        await node.stop_child(child)
