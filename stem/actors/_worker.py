"""The Worker actor: N execution slots fed by a claiming loop.

Life of a delivery: the fetcher claims a batch (never more than free slots +
prefetch), checks revocations for the whole batch in one call, and hands the
deliveries to the slots through a bounded channel. A slot runs the handler in
its own cancel scope (soft and hard time limits, terminate-revocation,
shutdown), then sends the outcome to the BrokerActor, which stores the result
*before* it acks. Leases of everything held are renewed in batches well
before they expire. See docs/architecture.md.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING, Any

import attrs
import trio

from stem._clock import now
from stem._codec import dumps
from stem._context import TaskContext
from stem._errors import BrokerUnavailable, EncodeError
from stem._instrument import NOOP, Instrumentation
from stem._options import DEFAULT_VISIBILITY_TIMEOUT, TaskOptions
from stem._producer import Producer
from stem._progress import Progress
from stem._result import ErrorInfo, TaskResult
from stem._signals import TaskEvent, WorkerEvent
from stem._workerconfig import WorkerConfig
from stem.contracts import Delivery

from . import _outcomes
from ._actor import Actor, ActorRef
from ._autoscale import run_autoscaler
from ._broker import Finish, Flush
from ._control import Control
from ._duties import Activity, heartbeat, timers_for, watch_revocations
from ._leases import HeldDeliveries
from ._limits import Deadlines
from ._mailbox import Mailbox
from ._outbox import Outbox
from ._prefetch import AdaptivePrefetch
from ._process import run_in_process
from ._progress import ProgressWriter
from ._ratelimit import WorkerRateLimiter
from ._ready import ReadyQueue
from ._startrecords import StartRecords
from ._threads import ThreadRunner
from ._workercontrol import WorkerControl
from ._workerstate import (
    SHUTDOWN_MODES,
    ActiveTask,
    Inspect,
    Running,
    ShutdownMode,
    Stop,
    Terminate,
    WorkerMessage,
    WorkerState,
    WorkerStatistics,
)

if TYPE_CHECKING:
    from stem._app import App
    from stem._handler import TaskHandler
    from stem.contracts import Backend

    from ._broker import BrokerMessage
    from ._eventbus import EventBus

logger = logging.getLogger("stem.worker")


@attrs.define(eq=False)
class Worker(WorkerControl, Actor[WorkerMessage]):
    """Executes tasks from ``config.queues`` with ``config.concurrency`` slots."""

    app: App
    backend: Backend
    broker: ActorRef[BrokerMessage]
    bus: EventBus
    config: WorkerConfig = attrs.field(factory=WorkerConfig)
    state: WorkerState = attrs.field(factory=WorkerState)
    #: what a running task enqueues with (``ctx.client``)
    producer: Producer | None = None
    instrumentation: Instrumentation = attrs.field(factory=lambda: NOOP)
    _leases: HeldDeliveries = attrs.field(init=False)
    _running: dict[str, Running] = attrs.field(factory=dict, init=False)
    _slots_done: trio.Event = attrs.field(factory=trio.Event, init=False)
    _live_slots: int = attrs.field(default=0, init=False)
    _stopping: bool = attrs.field(default=False, init=False)
    _counts: dict[str, int] = attrs.field(factory=dict, init=False)
    _started_at: float = attrs.field(default=0.0, init=False)
    _threads: ThreadRunner = attrs.field(factory=ThreadRunner, init=False)
    _ready: ReadyQueue = attrs.field(factory=lambda: ReadyQueue(), init=False)
    _outbox: Outbox = attrs.field(init=False)
    #: receipts whose outcome was sent to the broker actor but not yet settled
    _finishing: set[str] = attrs.field(factory=set, init=False)
    _limiter: WorkerRateLimiter | None = attrs.field(default=None, init=False)
    _claim_lease: float = attrs.field(default=DEFAULT_VISIBILITY_TIMEOUT, init=False)
    _paused: set[str] = attrs.field(factory=set, init=False)
    _resumed: trio.Event = attrs.field(factory=trio.Event, init=False)
    _run_scope: trio.CancelScope = attrs.field(factory=trio.CancelScope, init=False)
    #: autoscaling: current slot target, slots asked to retire, idle waiters
    _slot_count: int = attrs.field(default=0, init=False)
    _retire: int = attrs.field(default=0, init=False)
    _idle_scopes: dict[trio.CancelScope, None] | None = attrs.field(
        default=None, init=False
    )
    _slots_nursery: trio.Nursery | None = attrs.field(default=None, init=False)
    #: what the heartbeat reports moved (in-process backends beat on change)
    _activity: Activity = attrs.field(factory=Activity, init=False)
    _waiting_claim: trio.CancelScope | None = attrs.field(default=None, init=False)
    _progress: ProgressWriter = attrs.field(init=False)
    #: RUNNING records not stored yet (see ``_startrecords``)
    _starts: StartRecords = attrs.field(init=False)
    #: the default prefetch's runtime estimate (``prefetch=-1``)
    _pace: AdaptivePrefetch = attrs.field(factory=AdaptivePrefetch, init=False)

    @_leases.default
    def _make_leases(self) -> HeldDeliveries:
        return HeldDeliveries(self.backend.broker, DEFAULT_VISIBILITY_TIMEOUT)

    @_outbox.default
    def _make_outbox(self) -> Outbox:
        return Outbox(self.broker)

    @_starts.default
    def _make_starts(self) -> StartRecords:
        return StartRecords(
            send=self._outbox.tell,
            after=self.config.running_record_after,
            worker_id=self.config.worker_id,
        )

    @_progress.default
    def _make_progress(self) -> ProgressWriter:
        return ProgressWriter(
            send=self._outbox.tell,
            emit=self._emit_task,
            interval=self.config.progress_interval,
        )

    # -- life cycle ---------------------------------------------------------

    async def run(
        self,
        mailbox: Mailbox[WorkerMessage],
        *,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        cfg = self.config
        self._started_at = now()
        self._ready = ReadyQueue()
        self._limiter = WorkerRateLimiter(
            self.backend.limiter, hold=cfg.rate_limit_hold
        )
        self._claim_lease = min(
            (h.task_options.visibility_timeout for h in self.app),
            default=DEFAULT_VISIBILITY_TIMEOUT,
        )
        self._slot_count = cfg.min_slots
        if cfg.autoscale is not None:
            self._idle_scopes = {}
        self._emit_worker("worker_init")
        timers = timers_for(cfg, self.backend.capabilities)
        crashed = False
        try:
            with self._run_scope:
                async with trio.open_nursery() as helpers:
                    helpers.start_soon(
                        self._leases.renew_forever, self._absorb, self._finishing
                    )
                    helpers.start_soon(self._outbox.forward_forever)
                    helpers.start_soon(self._progress.write_forever)
                    helpers.start_soon(self._starts.send_forever)
                    await helpers.start(
                        partial(
                            heartbeat,
                            self.backend.heartbeats,
                            cfg,
                            self.worker_statistics,
                            started_at=self._started_at,
                            on_beat=partial(self._emit_worker, "worker_heartbeat"),
                            activity=None if timers.beat_on_timer else self._activity,
                        )
                    )
                    helpers.start_soon(
                        watch_revocations,
                        self.backend.revocations,
                        timers.revocation_poll,
                        self.terminate,
                    )
                    helpers.start_soon(self._serve_mailbox, mailbox)
                    if self.backend.capabilities.broadcast:
                        await helpers.start(Control(worker=self).run)
                    async with trio.open_nursery() as slots:
                        self._slots_nursery = slots
                        self._live_slots = self._slot_count
                        for index in range(self._slot_count):
                            slots.start_soon(self._slot, name=f"slot-{index}")
                        fetch_scope = trio.CancelScope()
                        slots.start_soon(self._fetch, fetch_scope)
                        if cfg.autoscale is not None:
                            helpers.start_soon(run_autoscaler, self)
                        task_status.started(ActorRef(mailbox))
                        self.state.ready.set()
                        self._emit_worker("worker_ready")
                        await self.state.stop_requested.wait()
                        self._emit_worker("worker_stopping")
                        fetch_scope.cancel()
                        await self._begin_stop()
                        grace = (
                            self.state.grace
                            if self.state.grace is not None
                            else cfg.grace_period
                        )
                        with trio.move_on_after(grace):
                            await self._slots_done.wait()
                        for running in list(self._running.values()):
                            running.cancel_reason = "shutdown"
                            running.scope.cancel()
                    await self._flush()
                    with trio.move_on_after(5):
                        while self._absorb():
                            await self._outbox.wait_settled()
                    helpers.cancel_scope.cancel()
        except Exception:
            crashed = True  # the supervisor restarts us with the same state
            raise
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await self._hand_back_all()
                try:
                    await self.backend.heartbeats.forget(cfg.worker_id)
                except Exception:
                    logger.debug("could not remove heartbeat", exc_info=True)
            self._emit_worker("worker_shutdown")
            if not crashed:
                self.state.stopped.set()

    async def _serve_mailbox(self, mailbox: Mailbox[WorkerMessage]) -> None:
        while True:
            try:
                msg = await mailbox.get()
            except trio.EndOfChannel:
                return
            match msg:
                case Stop(grace=grace):
                    self.state.grace = grace
                    self.state.stop_requested.set()
                case Terminate(task_id=task_id, reason=reason):
                    self.terminate(task_id, reason)
                case Inspect(reply=reply):
                    reply.send(self.worker_statistics())

    async def _begin_stop(self) -> None:
        """No new work: hand back what is held but not started."""
        self._stopping = True
        for delivery in self._ready.close():
            self._hand_back(delivery)

    async def _flush(self) -> None:
        try:
            await self.broker.ask(lambda reply: Flush(reply=reply), timeout=30)
        except Exception:
            logger.warning("broker did not confirm the final flush", exc_info=True)

    async def _hand_back_all(self) -> None:
        """Return every held delivery to its queue (used on cancellation)."""
        self._absorb()
        held = [d for d in self._leases.take_all() if d.receipt not in self._finishing]
        for delivery in held:
            try:
                await self.backend.broker.nack(delivery, requeue=True)
            except Exception:
                logger.debug("hand-back failed; the lease will expire", exc_info=True)

    def _hand_back(self, delivery: Delivery) -> None:
        self._finish(_outcomes.handed_back(delivery, at=now()))

    # -- claiming -----------------------------------------------------------

    async def _fetch(self, scope: trio.CancelScope) -> None:
        cfg = self.config
        queues = list(cfg.queues)
        timers = timers_for(cfg, self.backend.capabilities)
        with scope:
            while True:
                self._absorb()
                free = self._capacity_now() - len(self._leases)
                if free <= 0 or (free < self._claim_at() and len(self._ready)):
                    await self._outbox.wait_settled()
                    continue
                active = queues
                if self._paused:
                    active = [q for q in queues if q not in self._paused]
                    if not active:
                        self._resumed = trio.Event()
                        await self._resumed.wait()
                        continue
                # A long in-process claim is cancelled (losing nothing) when a
                # queue is paused or resumed, so it never serves a stale list.
                with trio.CancelScope() as waiting:
                    self._waiting_claim = waiting if timers.interruptible else None
                    try:
                        deliveries = await self.backend.broker.claim(
                            active,
                            limit=free,
                            lease=self._claim_lease,
                            consumer=cfg.worker_id,
                            wait=timers.claim_wait,
                        )
                    except BrokerUnavailable as exc:
                        logger.warning("claim failed, retrying: %s", exc)
                        await trio.sleep(1.0)
                        continue
                    except Exception:
                        # A backend's bug or a state it cannot read: the worker
                        # (and its running tasks) stays up and tries again.
                        logger.exception("claim failed unexpectedly; retrying in 1 s")
                        await trio.sleep(1.0)
                        continue
                    finally:
                        self._waiting_claim = None
                if waiting.cancelled_caught:
                    continue
                if len(queues) > 1 and cfg.queue_order == "round-robin":
                    queues.append(queues.pop(0))  # fairness across queues
                if not deliveries:
                    continue
                self._leases.add(deliveries, self._claim_lease)
                await self._drop_revoked(deliveries)
                # All at once, one checkpoint per claim (not per delivery);
                # slots take from the front, so start order stays FIFO.
                self._ready.put_many([d for d in deliveries if self._is_open(d)])
                # Two passes: the slots just woken start their tasks before
                # this loop prepares its next claim (within one scheduler
                # pass Trio runs tasks in either order).
                await trio.lowlevel.checkpoint()
                await trio.lowlevel.checkpoint()

    def _capacity_now(self) -> int:
        """Deliveries to hold: the current slots plus the prefetch (by
        default as deep as the tasks are short, see ``_prefetch``)."""
        slots = self._slot_count
        return self.config.capacity_for(slots, adaptive=self._pace.depth(slots))

    def _claim_at(self) -> int:
        """The smallest claim worth making while deliveries still wait."""
        if self.config.prefetch >= 0:
            return 1
        return self._pace.claim_at(self._slot_count)

    async def _drop_revoked(self, deliveries: list[Delivery]) -> None:
        """Settle the revoked ones; a backend that checked in the claim
        (``Delivery.revocation_checked``) saves the lookup's round trip."""
        ids = [
            d.task_id
            for d in deliveries
            if d.envelope is not None and not d.revocation_checked
        ]
        revoked = {}
        if ids:
            try:
                revoked = await self.backend.revocations.is_revoked(ids)
            except BrokerUnavailable:
                pass  # checked again just before running
        for delivery in deliveries:
            rev = (
                delivery.revocation
                if delivery.revocation_checked
                else revoked.get(delivery.task_id)
            )
            if rev is not None and delivery.envelope is not None:
                self._revoke_delivery(delivery, rev.reason)

    def _revoke_delivery(self, delivery: Delivery, reason: str) -> TaskResult | None:
        env = delivery.envelope
        assert env is not None
        self._count("revoked")
        self._emit_task(
            "task_revoked", env.id, env.name, env.queue, env.attempt, reason=reason
        )
        ttl = self._options(env.name).result_ttl
        return self._finish(_outcomes.revoked(delivery, reason, at=now(), ttl=ttl))

    # -- executing ----------------------------------------------------------

    async def _slot(self) -> None:
        idle = self._idle_scopes
        try:
            while True:
                if idle is None:
                    try:
                        delivery = await self._ready.get()
                    except trio.EndOfChannel:
                        return
                else:  # autoscaling: an idle slot may be asked to retire
                    if self._retire > 0:
                        self._retire -= 1
                        return
                    with trio.CancelScope() as wait_scope:
                        idle[wait_scope] = None
                        try:
                            delivery = await self._ready.get()
                        except trio.EndOfChannel:
                            return
                        finally:
                            idle.pop(wait_scope, None)
                    if wait_scope.cancelled_caught:
                        continue
                if not self._is_open(delivery):
                    continue  # already settled (revoked in the batch check)
                if self._stopping:
                    self._hand_back(delivery)
                    continue
                await self._execute(delivery)
        finally:
            self._live_slots -= 1
            if self._live_slots == 0:
                self._slots_done.set()

    def add_slots(self, count: int) -> int:
        """Start up to ``count`` more slots (never above the maximum)."""
        if self._slots_nursery is None or self._stopping:
            return 0
        count = min(count, self.config.concurrency - self._slot_count)
        for _ in range(max(count, 0)):
            self._slot_count += 1
            self._live_slots += 1
            self._slots_nursery.start_soon(self._slot)
        if count > 0:
            self._outbox.poke()
        return max(count, 0)

    def retire_slots(self, count: int) -> int:
        """Ask up to ``count`` slots to stop (never below the minimum); idle
        ones stop now, busy ones after their task."""
        if self._idle_scopes is None:
            return 0
        count = min(count, self._slot_count - self.config.min_slots)
        if count <= 0:
            return 0
        self._slot_count -= count
        self._retire += count
        for wait_scope in list(self._idle_scopes)[:count]:
            wait_scope.cancel()
        return count

    def unstarted(self) -> int:
        """Deliveries held but not yet running nor finishing."""
        return len(self._leases) - len(self._running) - len(self._finishing)

    def _is_open(self, delivery: Delivery) -> bool:
        """Held, and no outcome decided for it yet."""
        receipt = delivery.receipt
        return receipt in self._leases and receipt not in self._finishing

    def _options(self, name: str) -> TaskOptions:
        handler = self.app.find_task(name)
        return handler.task_options if handler is not None else TaskOptions()

    async def _execute(self, delivery: Delivery) -> None:
        env = delivery.envelope
        handler = self.app.find_task(env.name) if env is not None else None
        refused = _outcomes.refusal(
            delivery,
            handler is not None,
            self.config.max_message_bytes,
            self.app.signing,
        )
        if refused is not None:
            self._dead(delivery, *refused)
            return
        assert env is not None
        assert handler is not None
        opts = handler.task_options
        at = now()
        if env.is_expired(at):
            self._revoke_delivery(delivery, "expired")
            return
        if opts.visibility_timeout != self._claim_lease:
            # Claims use the shortest lease of any task; a longer one is
            # renewed to its own length at the renewer's next pass.
            self._leases.keep_for(delivery.receipt, opts.visibility_timeout)
        if opts.rate_limit is not None:
            assert self._limiter is not None
            wait = await self._limiter.acquire(env, opts)
            if wait > 0.0:
                self._defer(delivery, wait)
                return
            if self._stopping:
                self._hand_back(delivery)
                return
            at = now()
        self._emit_task("task_received", env.id, env.name, env.queue, env.attempt)
        self._starts.started(delivery.receipt, env, at, opts.result_ttl)
        if not self.instrumentation.enabled:
            await self._run_attempt(delivery, handler, opts, at)
            return
        with self.instrumentation.attempt(
            env, worker_id=self.config.worker_id
        ) as scope:
            t0 = trio.current_time()
            result = await self._run_attempt(delivery, handler, opts, at)
            scope.outcome(result, runtime=trio.current_time() - t0)

    async def _run_attempt(
        self,
        delivery: Delivery,
        handler: TaskHandler[Any],
        opts: TaskOptions,
        at: float,
    ) -> TaskResult | None:
        """Run one attempt and send its outcome; returns the stored result
        (None when the delivery was handed back)."""
        env = delivery.envelope
        assert env is not None
        limits = Deadlines.start(opts, trio.current_time())
        # One scope carries both limits (the nearer one is its deadline) and the
        # terminate/shutdown cancellation: once the soft limit cancels the
        # attempt, nothing unshielded runs until the hard one anyway.
        scope = trio.CancelScope(deadline=limits.nearest)
        running = Running(
            delivery=delivery,
            scope=scope,
            started_at=at,
            name=env.name,
            attempt=env.attempt,
        )
        self._running[env.id] = running
        self._activity.touch()
        ctx = TaskContext(
            task_id=env.id,
            name=env.name,
            attempt=env.attempt,
            max_retries=env.max_retries,
            queue=env.queue,
            headers=env.headers,
            envelope=env,
            worker_id=self.config.worker_id,
            client=self.producer,
            previous_result=env.meta.get("previous_result"),
            soft_deadline=limits.soft,
            hard_deadline=limits.hard,
            cancel_scope=scope,
            reporter=self._progress.begin(
                env,
                meta={"worker_id": self.config.worker_id},
                ttl=opts.result_ttl,
            ),
        )
        if self.bus.wants("task_prerun"):
            self._emit_task("task_prerun", env.id, env.name, env.queue, env.attempt)
        value: Any = None
        error: BaseException | None = None
        try:
            with scope:
                try:
                    if opts.execution == "process":
                        value = await run_in_process(handler, ctx, env.args)
                    elif handler.is_async:
                        value = await handler(ctx, env.args)
                    else:
                        value = await self._threads.run(
                            partial(handler, ctx, env.args),
                            task_id=env.id,
                            name=env.name,
                            attempt=env.attempt,
                        )
                except Exception as exc:  # the task's own failure
                    error = exc
        finally:
            self._running.pop(env.id, None)
            progress = self._progress.end(env.id)
        ended = trio.current_time()
        if running.cancel_reason is None:
            cancelled = scope.cancelled_caught
            limited = limits.error(opts, env, cancelled=cancelled, ended=ended)
            error = limited or error
        runtime = ended - limits.started
        self._pace.observe(runtime)
        if scope.cancelled_caught and running.cancel_reason is not None:
            if running.cancel_reason == "shutdown":
                self._hand_back(delivery)
                return None
            return self._revoke_delivery(delivery, running.cancel_reason or "revoked")
        if self.bus.wants("task_postrun"):
            self._emit_task(
                "task_postrun",
                env.id,
                env.name,
                env.queue,
                env.attempt,
                runtime=runtime,
            )
        if error is None:
            try:
                dumps(value, what="result")
            except EncodeError as exc:
                error = exc
        if error is None:
            return self._succeed(delivery, value, opts, runtime, progress)
        return self._fail(delivery, error, opts, runtime, progress)

    def _succeed(
        self,
        delivery: Delivery,
        value: Any,
        opts: TaskOptions,
        runtime: float,
        progress: Progress | None = None,
    ) -> TaskResult | None:
        env = delivery.envelope
        assert env is not None
        self._count("succeeded")
        if self.bus.wants("task_succeeded"):
            self._emit_task(
                "task_succeeded",
                env.id,
                env.name,
                env.queue,
                env.attempt,
                value=value,
                runtime=runtime,
            )
        return self._finish(
            _outcomes.succeeded(
                delivery,
                value,
                at=now(),
                ttl=opts.result_ttl,
                on_done=self._outbox.settled,
            ),
            progress,
        )

    def _fail(
        self,
        delivery: Delivery,
        error: BaseException,
        opts: TaskOptions,
        runtime: float,
        progress: Progress | None = None,
    ) -> TaskResult | None:
        env = delivery.envelope
        assert env is not None
        outcome = _outcomes.failed(delivery, error, opts, at=now())
        if outcome.kind == "retry":
            self._count("retried")
            if self.bus.wants("task_retry"):
                self._emit_task(
                    "task_retry",
                    env.id,
                    env.name,
                    env.queue,
                    env.attempt,
                    error=outcome.error,
                    retry_in=outcome.delay,
                    runtime=runtime,
                )
        else:
            self._count("failed")
            if self.bus.wants("task_failed"):
                self._emit_task(
                    "task_failed",
                    env.id,
                    env.name,
                    env.queue,
                    env.attempt,
                    error=outcome.error,
                    runtime=runtime,
                    reason=outcome.reason,
                )
        return self._finish(outcome.finish, progress)

    def _dead(self, delivery: Delivery, reason: str, info: ErrorInfo) -> None:
        self._count("dead_lettered")
        finish = _outcomes.rejected(delivery, reason, info, at=now())
        entry = finish.dead
        assert entry is not None
        if self.bus.wants("task_dead_lettered"):
            self._emit_task(
                "task_dead_lettered",
                entry.task_id,
                entry.name,
                entry.queue,
                entry.attempts,
                error=info,
                reason=reason,
            )
        logger.warning(
            "dead-lettered %r (%s): %s",
            entry.task_id,
            reason,
            info.message,
        )
        self._finish(finish)

    def _defer(self, delivery: Delivery, wait: float) -> None:
        """Rate-limited: give the delivery back unchanged, visible after
        ``wait`` seconds (no attempt used, no result written)."""
        self._count("rate_limited")
        self._finishing.add(delivery.receipt)
        self._outbox.tell(
            Finish(
                delivery=delivery,
                action="retry",
                delay=wait,
                on_done=self._outbox.settled,
            )
        )

    def _finish(
        self, finish: Finish, progress: Progress | None = None
    ) -> TaskResult | None:
        """Send an outcome; its record keeps the attempt's last progress."""
        if progress is not None and finish.result is not None:
            finish = attrs.evolve(
                finish, result=attrs.evolve(finish.result, progress=progress)
            )
        self._count("processed")
        self._starts.ended(finish.delivery.receipt)
        self._finishing.add(finish.delivery.receipt)
        if finish.on_done is None:
            finish = attrs.evolve(finish, on_done=self._outbox.settled)
        self._outbox.tell(finish)
        return finish.result

    def _absorb(self) -> int:
        """Forget the deliveries the BrokerActor settled since last time
        (the worker's own tasks call it before they count what it holds);
        returns how many are still held."""
        for done in self._outbox.take_settled():
            self._leases.discard(done.receipt)
            self._finishing.discard(done.receipt)
        return len(self._leases)

    # -- background duties --------------------------------------------------

    # -- bookkeeping --------------------------------------------------------

    def _count(self, key: str) -> None:
        self._counts[key] = self._counts.get(key, 0) + 1
        self._activity.touch()

    @property
    def started_at(self) -> float:
        return self._started_at

    def worker_statistics(self) -> WorkerStatistics:
        self._absorb()
        c = self._counts
        return WorkerStatistics(
            worker_id=self.config.worker_id,
            queues=self.config.queues,
            concurrency=self.config.concurrency,
            held=len(self._leases),
            active=tuple(
                ActiveTask(
                    task_id=tid, name=r.name, attempt=r.attempt, started_at=r.started_at
                )
                for tid, r in self._running.items()
            ),
            processed=c.get("processed", 0),
            succeeded=c.get("succeeded", 0),
            failed=c.get("failed", 0),
            retried=c.get("retried", 0),
            dead_lettered=c.get("dead_lettered", 0),
            revoked=c.get("revoked", 0),
            rate_limited=c.get("rate_limited", 0),
            slots=self._slot_count,
            paused=tuple(sorted(self._paused)),
            abandoned=self._threads.abandoned(),
        )

    def _emit_task(
        self, signal: str, task_id: str, name: str, queue: str, attempt: int, **kw: Any
    ) -> None:
        if self.bus.wants(signal):
            self.bus.emit(
                TaskEvent(
                    signal=signal,
                    at=now(),
                    task_id=task_id,
                    name=name,
                    queue=queue,
                    attempt=attempt,
                    worker_id=self.config.worker_id,
                    **kw,
                )
            )

    def _emit_worker(self, signal: str) -> None:
        if self.bus.wants(signal):
            cfg = self.config
            self.bus.emit(
                WorkerEvent(
                    signal=signal,
                    at=now(),
                    worker_id=cfg.worker_id,
                    queues=cfg.queues,
                    concurrency=cfg.concurrency,
                    active=len(self._running),
                    processed=self._counts.get("processed", 0),
                )
            )


__all__ = [
    "SHUTDOWN_MODES",
    "ActiveTask",
    "Inspect",
    "ShutdownMode",
    "Stop",
    "Terminate",
    "Worker",
    "WorkerConfig",
    "WorkerMessage",
    "WorkerState",
    "WorkerStatistics",
]
