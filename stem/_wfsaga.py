"""Compensation: ``wf.saga()``.

A saga keeps an undo for every step that completed; when a later step fails,
the undos run newest first. Each undo is an ordinary ``wf`` step (an
activity, an inline step or a child run), so compensation is as durable as
the rest of the run: a process dying in the middle of it resumes from the
history, where the failure replays and the undos already done return their
recorded results without running again. Registering an undo is sync and
deterministic (it follows the replayed steps), so a replay registers the same
undos in the same order.

Only an ordinary failure (an ``Exception``) compensates: the internal
unwinding of a suspension, a lost lease, or a Trio cancellation (the run's
``max_duration``, a worker shutting down) never does.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

import attrs

from ._result import ErrorInfo
from ._wfstep import StepCall, check_unstarted
from ._workflow import CompensationFailed, StepFailed, WorkflowTimeout

if TYPE_CHECKING:
    from ._wfcontext import WorkflowContext


@attrs.define(eq=False)
class Saga:
    """Undos for a run's completed steps: ``saga = wf.saga()``.

    ``saga.add(wf.activity("car.cancel", args={...}))`` right after the step
    it undoes completed; ``async with wf.saga() as saga:`` compensates when
    the block raises, then lets the failure go on (or raises
    :class:`~stem.CompensationFailed`, chained from it, if an undo failed).
    ``await saga.compensate()`` does it by hand.
    """

    ctx: WorkflowContext
    parallel: bool = False
    _undos: list[StepCall] = attrs.field(factory=list, init=False)

    def add(self, undo: StepCall) -> None:
        """Register ``undo`` (a ``wf`` step, not awaited) to run if the saga
        compensates."""
        self._undos.append(check_unstarted(self.ctx, undo, "saga.add"))

    @property
    def pending(self) -> int:
        """How many undos are registered and not yet run."""
        return len(self._undos)

    async def compensate(self) -> None:
        """Run the registered undos, newest first (all at once with
        ``parallel=True``), each as a durable step; every undo is tried even
        if one fails, then CompensationFailed lists the failures. The undos
        are used up: a second call does nothing."""
        undos = list(reversed(self._undos))
        self._undos.clear()
        errors: dict[str, ErrorInfo] = {}
        if self.parallel:
            outcomes = await self.ctx.gather(*undos, return_exceptions=True)
            for undo, outcome in zip(undos, outcomes, strict=True):
                if isinstance(outcome, StepFailed | WorkflowTimeout):
                    errors[_label(undo, outcome)] = _error(outcome)
        else:
            for undo in undos:
                try:
                    await undo
                except (StepFailed, WorkflowTimeout) as exc:
                    errors[_label(undo, exc)] = _error(exc)
        if errors:
            raise CompensationFailed(errors)

    async def __aenter__(self) -> Saga:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not isinstance(exc, Exception):
            return  # success, or an unwinding that is not a failure
        try:
            await self.compensate()
        except CompensationFailed as failed:
            raise failed from exc


def _label(undo: StepCall, exc: Exception) -> str:
    step = getattr(exc, "step", None)
    return str(step) if step is not None else f"{undo.kind}:{undo.name}"


def _error(exc: Exception) -> ErrorInfo:
    error = getattr(exc, "error", None)
    if isinstance(error, ErrorInfo):
        return error
    return ErrorInfo(type=f"stem.{type(exc).__name__}", message=str(exc))
