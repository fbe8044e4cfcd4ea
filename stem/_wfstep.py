"""One ``wf`` step before it starts: :class:`StepCall`.

``wf.activity``, ``wf.step``, ``wf.sleep``, ``wf.wait_for_event`` and
``wf.child`` return one. Nothing happens until it is awaited (alone, in
``wf.gather``, or as a saga's undo); its step number is taken when it starts,
so the history follows the order in which the script starts its steps.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any

import attrs

from .contracts import WorkflowStep

if TYPE_CHECKING:
    from ._wfcontext import WorkflowContext

#: The body of a step: ``body(index, recorded)`` returns the step's value,
#: raises its failure, or raises Suspend while it is not finished.
StepBody = Callable[[int, WorkflowStep | None], Awaitable[Any]]

_CALLS = {"event": "wait_for_event"}


@attrs.define(eq=False)
class StepCall:
    """One ``wf`` step that has not started: ``await`` it, pass it to
    ``wf.gather(...)``, or register it as an undo with ``saga.add(...)``.

    Its step number is taken when it starts. Each call starts once.
    """

    ctx: WorkflowContext
    kind: str
    name: str
    body: StepBody = attrs.field(repr=False)
    _started: bool = attrs.field(default=False, init=False)

    @property
    def started(self) -> bool:
        return self._started

    def start(self) -> tuple[int, WorkflowStep | None]:
        """Take the next step number (checking it against the history);
        returns it and the step recorded there."""
        if self._started:
            raise RuntimeError(f"{self!r} was already awaited; make a new one")
        self._started = True
        return self.ctx.next_step(self.kind, self.name)

    async def _run(self) -> Any:
        index, recorded = self.start()
        return await self.body(index, recorded)

    def __await__(self) -> Generator[Any, None, Any]:
        return self._run().__await__()

    def __repr__(self) -> str:
        return f"<wf.{_CALLS.get(self.kind, self.kind)}({self.name!r})>"


def check_unstarted(ctx: WorkflowContext, call: object, what: str) -> StepCall:
    """``call`` if it is a step of ``ctx`` that has not started; TypeError or
    RuntimeError naming ``what`` otherwise."""
    if not isinstance(call, StepCall) or call.ctx is not ctx:
        raise TypeError(
            f"{what} takes steps made by this run's wf.activity, wf.child, "
            f"wf.step, wf.sleep or wf.wait_for_event (not awaited), got {call!r}"
        )
    if call.started:
        raise RuntimeError(f"{call!r} was already awaited; make a new one")
    return call
