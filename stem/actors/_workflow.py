"""The WorkflowEngine actor: claims due runs, replays their scripts, parks them.

One engine runs on every worker node whose app registers workflows. Its loop:

1. read the store's change cursor, claim due runs of the registered workflows
   with a lease (so two engines never drive one run) and drive each in its
   own task (at most ``concurrency`` at once), renewing the lease meanwhile;
2. sleep until the earliest due time the store reports, woken early by a
   change in the store (any process: :meth:`WorkflowStore.wait_due`) or a
   nudge from this process (a message, a finished drive).

Driving a run replays its script (see :mod:`stem._workflow`): it ends with
the run completed or failed, or suspended in the store until its next timer,
event, activity result or child completion. Every write of a drive presents
the fencing token its claim returned; a refused write
(:class:`~stem.WorkflowLeaseLost`: the lease passed, or the run was claimed
again) means the run is lost to this drive, which stops at once without
writing anything more. Activities finishing wake their run through a finish
hook (:func:`workflow_finish_hook`), which the broker actor runs before it
acks, and through ``results.wait`` as a fallback.

The engine claims only the runs whose version it can replay or that are
older than all its code (``max_versions``): during a deploy, runs started by
newer code wait for an engine that has it.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import trio

from stem._clock import now
from stem._codec import dumps
from stem._envelope import Envelope
from stem._errors import BrokerUnavailable, EncodeError
from stem._ids import new_id
from stem._result import ErrorInfo
from stem._wfcontext import WorkflowContext, check_history_consumed
from stem._workflow import (
    ACTIVITY_RECHECK,
    Abandon,
    Suspend,
    WorkflowLeaseLost,
    WorkflowScript,
    new_run,
    run_event,
)
from stem.contracts import WorkflowRun

from ._actor import Actor, ActorRef
from ._mailbox import Mailbox

if TYPE_CHECKING:
    from ._broker import Finish, FinishHook
    from ._runtime import Node

logger = logging.getLogger("stem.workflows")

#: The longest the engine sleeps without any due time or wake (seconds).
MAX_IDLE = 3600.0
#: At most this many activity results are watched per engine (the fallback).
MAX_WATCHED = 1000
#: How long a drive cut short by a shutdown tries to hand its run back.
RELEASE_TIMEOUT = 2.0


@attrs.frozen
class RunDue:
    """Runs became due (a hook, a start in this process): look now."""

    run_ids: tuple[str, ...] = ()


@attrs.frozen
class EventArrived:
    """An event was delivered to runs: look now."""

    topic: str


@attrs.frozen
class Cancel:
    """A run was asked to cancel: look now."""

    run_id: str


EngineMessage = RunDue | EventArrived | Cancel


@attrs.frozen(kw_only=True)
class EngineConfig:
    owner: str = attrs.field(
        factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{new_id()[-8:]}"
    )
    lease: float = 60.0
    concurrency: int = 32

    def __attrs_post_init__(self) -> None:
        if self.lease <= 0:
            raise ValueError(f"lease must be > 0 seconds, got {self.lease!r}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency!r}")


@attrs.frozen(kw_only=True)
class EngineStatistics:
    driven: int
    completed: int
    failed: int
    suspended: int
    cancelled: int
    lost_leases: int
    active: int


def _info(kind: str, message: str) -> ErrorInfo:
    return ErrorInfo(type=f"stem.{kind}", message=message)


def _only_cancelled(exc: BaseException) -> bool:
    """``exc`` is a Trio cancellation (possibly grouped by nurseries)."""
    if isinstance(exc, trio.Cancelled):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(trio.Cancelled)[1] is None
    return False


@attrs.define(eq=False)
class WorkflowEngine(Actor[EngineMessage]):
    """Drives the runs of ``scripts`` (workflow name -> version -> script)
    stored in the node's backend."""

    node: Node
    scripts: Mapping[str, Mapping[int, WorkflowScript]]
    config: EngineConfig = attrs.field(factory=EngineConfig)
    _nudge: trio.Event = attrs.field(factory=trio.Event, init=False)
    _driving: set[str] = attrs.field(factory=set, init=False)
    _watched: set[str] = attrs.field(factory=set, init=False)
    _stats: dict[str, int] = attrs.field(factory=dict, init=False)
    _nursery: trio.Nursery | None = attrs.field(default=None, init=False)

    # ------------------------------------------------------------ actor

    async def run(
        self,
        mailbox: Mailbox[EngineMessage],
        *,
        task_status: trio.TaskStatus[
            ActorRef[EngineMessage]
        ] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._loop)
            await super().run(mailbox, task_status=task_status)
            nursery.cancel_scope.cancel()

    async def handle(self, msg: EngineMessage) -> None:
        await trio.lowlevel.checkpoint()
        self.nudge()

    def nudge(self) -> None:
        """Look for due runs now (sync; safe from any task of this run)."""
        self._nudge.set()

    def engine_statistics(self) -> EngineStatistics:
        s = self._stats
        return EngineStatistics(
            driven=s.get("driven", 0),
            completed=s.get("completed", 0),
            failed=s.get("failed", 0),
            suspended=s.get("suspended", 0),
            cancelled=s.get("cancelled", 0),
            lost_leases=s.get("lost_leases", 0),
            active=len(self._driving),
        )

    def _count(self, key: str) -> None:
        self._stats[key] = self._stats.get(key, 0) + 1

    # ------------------------------------------------------------ loop

    @property
    def _store(self) -> Any:
        return self.node.backend.workflows

    @property
    def max_versions(self) -> dict[str, int]:
        """The newest version of each workflow this engine can replay."""
        return {name: max(versions) for name, versions in self.scripts.items()}

    async def _loop(self) -> None:
        store = self._store
        names = sorted(self.scripts)
        limits = self.max_versions
        cfg = self.config
        cursor: int | None = None
        async with trio.open_nursery() as runs:
            while True:
                self._nudge = trio.Event()
                nudged = self._nudge
                try:
                    cursor = await store.wait_due(None, timeout=0)
                    free = cfg.concurrency - len(self._driving)
                    if free <= 0:
                        await nudged.wait()  # a drive ending frees a slot
                        continue
                    claimed = await store.claim(
                        cfg.owner,
                        names=names,
                        lease=cfg.lease,
                        limit=free,
                        max_versions=limits,
                    )
                    for run in claimed:
                        self._driving.add(run.run_id)
                        runs.start_soon(self._drive, run)
                    if claimed and len(claimed) == free:
                        await trio.lowlevel.checkpoint()
                        continue
                    due = await store.next_due(names, max_versions=limits)
                except BrokerUnavailable as exc:
                    logger.warning("workflow store unavailable: %s", exc)
                    await trio.sleep(1.0)
                    continue
                if due is None:
                    timeout = MAX_IDLE
                else:
                    # A due run nobody could claim (a race) is looked at again
                    # shortly, never in a hot loop.
                    timeout = min(max(due - now(), 0.0), MAX_IDLE)
                    if not claimed and timeout <= 0:
                        timeout = 0.05
                if timeout > 0:
                    await self._idle(nudged, cursor, timeout)

    async def _idle(
        self, nudged: trio.Event, cursor: int | None, timeout: float
    ) -> None:
        async with trio.open_nursery() as nursery:

            async def store_change() -> None:
                try:
                    await self._store.wait_due(cursor, timeout=timeout)
                except BrokerUnavailable as exc:
                    logger.warning("workflow store unavailable: %s", exc)
                    await trio.sleep(min(timeout, 1.0))
                nursery.cancel_scope.cancel()

            async def local() -> None:
                await nudged.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(store_change)
            nursery.start_soon(local)

    # ------------------------------------------------------------ driving

    async def _drive(self, run: WorkflowRun) -> None:
        try:
            await self._drive_leased(run)
        except (WorkflowLeaseLost, Abandon) as exc:
            self._lost(run, exc)
        except BrokerUnavailable as exc:
            logger.warning("run %r left to its lease: %s", run.run_id, exc)
        except Exception:
            logger.exception("driving workflow run %r failed", run.run_id)
        except BaseException as exc:
            if _only_cancelled(exc):
                await self._hand_back(run)
            raise
        finally:
            self._driving.discard(run.run_id)
            self.nudge()

    async def _drive_leased(self, run: WorkflowRun) -> None:
        """Drive ``run`` while a task renews its lease; the drive's own
        failure comes out bare (not in a nursery's exception group)."""
        failure: Exception | Abandon | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._keep_lease, run, nursery.cancel_scope)
            try:
                await self._drive_once(run)
            except (Exception, Abandon) as exc:
                failure = exc
            finally:
                nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure

    def _lost(self, run: WorkflowRun, exc: BaseException) -> None:
        """A write of the drive of ``run`` was refused: stop, write nothing."""
        lost = exc.lost if isinstance(exc, Abandon) else exc
        logger.warning("lost workflow run %r: %s", run.run_id, lost)
        self._count("lost_leases")

    async def _hand_back(self, run: WorkflowRun) -> None:
        """The engine is stopping in the middle of a drive: release the run
        so another engine replays it now rather than when the lease ends."""
        with trio.CancelScope(shield=True), trio.move_on_after(RELEASE_TIMEOUT):
            try:
                await self._store.release(run.run_id, run.fence)
            except (WorkflowLeaseLost, BrokerUnavailable) as exc:
                logger.info("run %r left to its lease: %s", run.run_id, exc)

    async def _keep_lease(self, run: WorkflowRun, scope: trio.CancelScope) -> None:
        lease = self.config.lease
        while True:
            await trio.sleep(lease / 3)
            try:
                await self._store.renew(run.run_id, run.fence, lease=lease)
            except WorkflowLeaseLost as exc:
                self._lost(run, exc)
                scope.cancel()
                return

    def _script(self, run: WorkflowRun) -> WorkflowScript | None:
        return self.scripts[run.workflow].get(run.version)

    async def _drive_once(self, run: WorkflowRun) -> None:
        store = self._store
        self._count("driven")
        if run.cancel_requested:
            await self._cancel(run)
            return
        script = self._script(run)
        if script is None and run.version > max(self.scripts[run.workflow]):
            # Newer code runs elsewhere (the store should not have handed it
            # over: claims leave such runs alone); hand it back untouched.
            logger.warning(
                "run %r of %r is version %d, newer than this engine's code; released",
                run.run_id,
                run.workflow,
                run.version,
            )
            await store.release(run.run_id, run.fence)
            return
        if script is None:
            known = ", ".join(str(v) for v in sorted(self.scripts[run.workflow]))
            message = (
                f"run {run.run_id} was started under version {run.version} of "
                f"{run.workflow!r} but this engine has version(s) {known}; it is "
                "not replayed with other code (keep the old version registered "
                "beside the new one until its runs finish)"
            )
            await self._finish(
                run, "version-mismatch", error=_info("WorkflowVersionMismatch", message)
            )
            return
        if run.deadline is not None and now() >= run.deadline:
            await self._finish(run, "failed", error=self._overdue(run))
            return
        steps = await store.list_steps(run.run_id)
        if steps:
            self._emit("workflow_resumed", run, run.current_step)
        ctx = WorkflowContext(run=run, host=self.node, history=steps)
        deadline = (
            math.inf
            if run.deadline is None
            else trio.current_time() + (run.deadline - now())
        )
        try:
            with trio.move_on_at(deadline) as limit:
                result = await script.fn(ctx)
                check_history_consumed(ctx)
                dumps(result, what=f"the result of workflow {run.workflow!r}")
            if limit.cancelled_caught:
                await self._finish(run, "failed", error=self._overdue(run))
                return
        except Suspend as suspend:
            await ctx.flush()
            until = suspend.until
            if run.deadline is not None:
                until = run.deadline if until is None else min(until, run.deadline)
            await store.suspend(
                run.run_id,
                run.fence,
                until=until,
                wakes=run.wakes,
                current_step=suspend.step,
            )
            self._count("suspended")
            self._emit("workflow_suspended", run, suspend.step)
            for task_id in ctx.pending_tasks:
                self._watch_activity(run.run_id, task_id)
            return
        except (BrokerUnavailable, EncodeError) as exc:
            if isinstance(exc, BrokerUnavailable):
                raise
            self._check_held(ctx)
            await self._finish(run, "failed", error=ErrorInfo.from_exception(exc))
            return
        except Exception as exc:
            self._check_held(ctx)
            await ctx.flush()
            await self._finish(run, "failed", error=ErrorInfo.from_exception(exc))
            return
        self._check_held(ctx)
        await ctx.flush()
        await self._finish(run, "completed", result=result)

    @staticmethod
    def _check_held(ctx: WorkflowContext) -> None:
        """A script that swallowed the refusal of one of its writes still
        stops here: the drive no longer owns the run."""
        if ctx.lost is not None:
            raise Abandon(ctx.lost)

    def _overdue(self, run: WorkflowRun) -> ErrorInfo:
        assert run.deadline is not None
        return _info(
            "WorkflowTimeout",
            f"run {run.run_id} of {run.workflow!r} passed its max_duration of "
            f"{run.deadline - run.created_at:g} s",
        )

    async def _finish(
        self,
        run: WorkflowRun,
        status: str,
        *,
        result: Any = None,
        error: ErrorInfo | None = None,
    ) -> None:
        store = self._store
        await store.finish(
            run.run_id, run.fence, status=status, result=result, error=error
        )
        self._count(status if status != "version-mismatch" else "failed")
        if run.parent_id is not None:
            await store.wake([run.parent_id])
        signal = {
            "completed": "workflow_completed",
            "cancelled": "workflow_cancelled",
        }.get(status, "workflow_failed")
        self._emit(signal, run, run.current_step, error=error)

    def _emit(self, signal: str, run: WorkflowRun, step: str | None, **kw: Any) -> None:
        bus = self.node.bus
        if bus.wants(signal):
            bus.emit(run_event(signal, run, step, **kw))

    async def _cancel(self, run: WorkflowRun) -> None:
        """Revoke the run's running activity, cancel its running children,
        then record it cancelled."""
        store = self._store
        for step in await store.list_steps(run.run_id):
            if step.status != "pending":
                continue
            if step.kind == "activity" and "task_id" in step.meta:
                await self.node.revoke(
                    str(step.meta["task_id"]),
                    terminate=True,
                    reason="workflow cancelled",
                )
            elif step.kind == "child" and "child_run_id" in step.meta:
                await store.request_cancel(str(step.meta["child_run_id"]))
        await self._finish(
            run,
            "cancelled",
            error=_info("WorkflowCancelled", f"run {run.run_id} was cancelled"),
        )

    def _watch_activity(self, run_id: str, task_id: str) -> None:
        """Fallback wake-up: wait for the activity's result in this process."""
        if (
            self._nursery is None
            or task_id in self._watched
            or len(self._watched) >= MAX_WATCHED
        ):
            return
        self._watched.add(task_id)
        self._nursery.start_soon(self._await_activity, run_id, task_id)

    async def _await_activity(self, run_id: str, task_id: str) -> None:
        try:
            result = await self.node.backend.results.wait(
                task_id, timeout=ACTIVITY_RECHECK
            )
            if result is not None:
                await self._store.wake([run_id])
                self.nudge()
        except BrokerUnavailable as exc:
            logger.warning("watching activity %r: %s", task_id, exc)
        finally:
            self._watched.discard(task_id)


def workflow_finish_hook(node: Node) -> FinishHook:
    """A broker finish hook waking the workflow run of every activity that
    finished for good (not a retry). It runs before the batch is acked, so
    the wake is stored before the activity's message is gone."""

    async def hook(finishes: Sequence[Finish]) -> Sequence[Envelope]:
        run_ids: set[str] = set()
        for fin in finishes:
            env = fin.delivery.envelope
            if env is None or fin.action in ("retry", "none"):
                continue
            run_id = env.meta.get("workflow_run")
            if isinstance(run_id, str):
                run_ids.add(run_id)
        if run_ids:
            await node.backend.workflows.wake(sorted(run_ids))
            node.wake_workflow_engines()
        return ()

    return hook


async def create_run(
    node: Node,
    script: WorkflowScript,
    params: Any,
    run_id: str,
    *,
    parent_id: str | None = None,
) -> bool:
    """Store a new run of ``script`` (False if ``run_id`` exists), wake the
    node's engines and emit ``workflow_started``. ``params`` must be a JSON
    value (EncodeError otherwise, nothing stored)."""
    run = new_run(script, params, run_id, at=now(), parent_id=parent_id)
    if not await node.backend.workflows.create_run(run):
        return False
    node.wake_workflow_engines()
    bus = node.bus
    if bus.wants("workflow_started"):
        bus.emit(run_event("workflow_started", run))
    return True
