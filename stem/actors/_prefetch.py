"""The default prefetch (``prefetch=-1``): as deep as the tasks are short.

A worker holds its running tasks plus a prefetch of claimed ones waiting for
a slot. A deep prefetch moves claims, results and acks in large batches (few
round trips per task), but a task waiting in one worker's prefetch is a task
another, idle worker cannot take. What that costs is time, not a count: 200
waiting no-op tasks are a few milliseconds of work, 200 waiting tasks of a
second each are 20 s of a second worker's idleness.

So the default holds about :data:`BUFFER` seconds of expected work beyond
the running slots, estimated from the tasks this worker ran: never fewer
than the slots (the fixed default before, kept while little is known or
tasks are long) and never more than :data:`CEILING`. The estimate is a
moving average of attempt runtimes that follows a slowdown fast (a long
attempt moves it half way to its own length) and a speed-up gradually, so a
burst of long tasks shrinks the prefetch by the next claim.
"""

from __future__ import annotations

import attrs

#: Seconds of expected work a worker holds beyond its running slots.
BUFFER = 0.02
#: The deepest default prefetch, whatever the tasks' length.
CEILING = 200
#: Weights of a new runtime sample longer / shorter than the estimate.
_SLOWDOWN = 0.5
_SPEEDUP = 0.05


@attrs.define
class AdaptivePrefetch:
    """The running estimate of one worker's attempt runtime."""

    #: seconds; None until an attempt has finished
    runtime: float | None = None

    def observe(self, seconds: float) -> None:
        """Take one attempt's runtime into the estimate."""
        seconds = max(seconds, 0.0)
        current = self.runtime
        if current is None:
            self.runtime = seconds
        else:
            weight = _SLOWDOWN if seconds > current else _SPEEDUP
            self.runtime = current + weight * (seconds - current)

    def depth(self, slots: int) -> int:
        """Deliveries to hold beyond ``slots`` running ones."""
        if self.runtime is None:
            return slots
        wanted = int(slots * BUFFER / max(self.runtime, 1e-6))
        return max(slots, min(CEILING, wanted))

    def claim_at(self, slots: int) -> int:
        """The smallest claim worth a round trip while work is still waiting
        in the prefetch: a quarter of its depth beyond the slots' own, so a
        deep prefetch refills in batches instead of one delivery per settle."""
        return max(1, (self.depth(slots) - slots) // 4)
