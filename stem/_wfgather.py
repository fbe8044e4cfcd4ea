"""``wf.gather``: several steps of one run at once, with a deterministic
history.

The steps take consecutive step numbers in argument order before any of them
runs, so the checkpoint order never depends on which finishes first. Their
bodies then run concurrently in the drive: each returns its value, raises its
failure, or raises :class:`~stem._workflow.Suspend` while it is not finished
(an activity or child still running, a sleep not due, no event yet). The
outcome is decided only from what the history records, so a replay after a
crash decides the same way:

* every step finished: their values (or the first failure in argument order);
* a step failed and others are pending: unless ``return_exceptions``, the
  pending ones are cancelled and recorded failed with ``stem.StepCancelled``
  (so they are finished too), then the first real failure is raised;
* otherwise the run suspends until the earliest time any pending step asked
  for (woken earlier by whatever finishes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs
import trio

from ._clock import now as _now
from ._result import ErrorInfo
from ._wfstep import StepCall, check_unstarted
from ._workflow import Abandon, StepFailed, Suspend, WorkflowTimeout

if TYPE_CHECKING:
    from ._wfcontext import WorkflowContext

#: The error type recorded on a step cancelled because a sibling failed.
CANCELLED = "stem.StepCancelled"

#: What a step's body can end with inside a gather, besides a value.
_FAILURES = (StepFailed, WorkflowTimeout)


@attrs.define(eq=False)
class _Branch:
    call: StepCall
    index: int
    recorded: Any
    value: Any = None
    failure: Exception | None = None
    suspended: Suspend | None = None
    crashed: BaseException | None = None

    @property
    def label(self) -> str:
        return f"{self.index}:{self.call.kind}:{self.call.name}"

    @property
    def cancelled(self) -> bool:
        error = getattr(self.failure, "error", None)
        return isinstance(error, ErrorInfo) and error.type == CANCELLED

    async def run(self) -> None:
        try:
            self.value = await self.call.body(self.index, self.recorded)
        except Suspend as exc:
            self.suspended = exc
        except _FAILURES as exc:
            self.failure = exc
        except Abandon as exc:
            self.crashed = exc
        except Exception as exc:
            self.crashed = exc


def _check_calls(ctx: WorkflowContext, calls: Sequence[object]) -> list[StepCall]:
    checked: list[StepCall] = []
    for call in calls:
        step = check_unstarted(ctx, call, "wf.gather")
        if any(step is other for other in checked):
            raise RuntimeError(f"{step!r} is given to wf.gather twice")
        checked.append(step)
    return checked


async def gather_steps(
    ctx: WorkflowContext, calls: Sequence[StepCall], *, return_exceptions: bool
) -> list[Any]:
    """See :meth:`stem.WorkflowContext.gather`."""
    branches = []
    for call in _check_calls(ctx, calls):
        index, recorded = call.start()
        branches.append(_Branch(call=call, index=index, recorded=recorded))
    if not branches:
        return []
    # Steps buffered before the gather are stored first, once.
    await ctx.flush()
    async with trio.open_nursery() as nursery:
        for branch in branches:
            nursery.start_soon(branch.run)
    crashed = [b.crashed for b in branches if b.crashed is not None]
    if crashed:
        lost = [exc for exc in crashed if isinstance(exc, Abandon)]
        raise (lost or crashed)[0]
    pending = [b for b in branches if b.suspended is not None]
    failed = [b for b in branches if b.failure is not None]
    real = [b for b in failed if not b.cancelled] or failed
    if return_exceptions:
        if pending:
            raise _suspend_all(pending)
        return [b.failure if b.failure is not None else b.value for b in branches]
    if real and pending:
        first = real[0]
        for branch in pending:
            await _cancel(ctx, branch, first)
        pending = [b for b in pending if b.suspended is not None]
    if pending:
        raise _suspend_all(pending)
    if real:
        failure = real[0].failure
        assert failure is not None
        raise failure
    return [b.value for b in branches]


def _suspend_all(pending: Sequence[_Branch]) -> Suspend:
    """Park the run until the earliest time a pending step asked for (None:
    only wakes); ``current_step`` names the first pending step."""
    times = [b.suspended.until for b in pending if b.suspended is not None]
    due = [t for t in times if t is not None]
    return Suspend(min(due) if due else None, pending[0].label)


async def _cancel(ctx: WorkflowContext, branch: _Branch, cause: _Branch) -> None:
    """Cancel the pending step of ``branch`` because ``cause`` failed, and
    record it failed with ``stem.StepCancelled`` (an event that arrived
    meanwhile is kept as it is: that step is finished)."""
    store = ctx.store
    step = await store.get_step(ctx.run_id, branch.index)
    if step is None or step.status != "pending":
        return
    meta = step.meta
    if step.kind == "activity" and "task_id" in meta:
        task_id = str(meta["task_id"])
        await ctx.host.revoke(
            task_id,
            terminate=True,
            reason=f"a sibling in wf.gather failed: {cause.label}",
        )
        if task_id in ctx.pending_tasks:
            ctx.pending_tasks.remove(task_id)
    elif step.kind == "child" and "child_run_id" in meta:
        await store.request_cancel(str(meta["child_run_id"]))
    elif step.kind == "event":
        fence = ctx.fence
        if not await ctx.write(
            lambda: store.unwatch(ctx.run_id, branch.index, fence=fence)
        ):
            resolved = await store.get_step(ctx.run_id, branch.index)
            if resolved is not None and resolved.status == "done":
                branch.suspended = None
                branch.value = resolved.value
                return
    info = ErrorInfo(
        type=CANCELLED,
        message=f"cancelled: step {cause.label} of the same wf.gather failed",
    )
    await ctx.save(attrs.evolve(step, status="failed", error=info, finished_at=_now()))
    branch.suspended = None
    try:
        ctx.replayed(attrs.evolve(step, status="failed", error=info))
    except _FAILURES as exc:
        branch.failure = exc
