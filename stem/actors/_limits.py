"""Which time limit ended an attempt (pure, the times passed in).

A limit cancels the attempt's cancel scope; the task sees ``trio.Cancelled``
at its next checkpoint. An async task that computes without a checkpoint is
never cancelled: it runs on past its hard limit, blocking the event loop,
and may then return a value. The hard limit is a promise about the outcome,
so such an attempt fails with :class:`stem.TimeLimitExceeded` all the same
(and a warning names the task). A soft limit only asks the task to stop at
its next checkpoint: an attempt that finishes without reaching one keeps its
outcome.
"""

from __future__ import annotations

import logging
from math import inf

import attrs

from stem._envelope import Envelope
from stem._errors import SoftTimeLimitExceeded, TimeLimitExceeded
from stem._options import TaskOptions

logger = logging.getLogger("stem.worker")


@attrs.frozen
class Deadlines:
    """When an attempt started and when its limits pass (Trio time)."""

    started: float
    soft: float | None
    hard: float | None

    @classmethod
    def start(cls, opts: TaskOptions, at: float) -> Deadlines:
        soft, hard = opts.soft_time_limit, opts.hard_time_limit
        return cls(
            started=at,
            soft=None if soft is None else at + soft,
            hard=None if hard is None else at + hard,
        )

    @property
    def nearest(self) -> float:
        """The deadline of the attempt's scope (``inf`` without limits)."""
        return min(
            inf if self.soft is None else self.soft,
            inf if self.hard is None else self.hard,
        )

    def error(
        self, opts: TaskOptions, env: Envelope, *, cancelled: bool, ended: float
    ) -> Exception | None:
        """The error the attempt of ``env`` ends with because of a limit, or
        None. ``cancelled``: its scope caught the cancellation of a deadline;
        ``ended``: when the attempt returned."""
        soft, hard = self.soft, self.hard
        if cancelled:
            if hard is not None and (soft is None or hard <= soft):
                return TimeLimitExceeded(
                    f"task exceeded its hard time limit of {opts.hard_time_limit} s"
                )
            return SoftTimeLimitExceeded(
                f"task exceeded its soft time limit of {opts.soft_time_limit} s"
            )
        if hard is None or ended <= hard:
            return None
        ran = ended - self.started
        logger.warning(
            "task %r (%r) ran %.3f s, past its hard time limit of %g s, without "
            "yielding to the event loop: nothing else ran on this worker "
            "meanwhile; recorded as failed (make it a sync def, or "
            "execution='process')",
            env.name,
            env.id,
            ran,
            opts.hard_time_limit,
        )
        return TimeLimitExceeded(
            f"task exceeded its hard time limit of {opts.hard_time_limit} s "
            f"(it ran {ran:.3f} s without yielding to the event loop)"
        )


__all__ = ["Deadlines"]
