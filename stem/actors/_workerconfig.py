"""The Worker's records: configuration, messages, statistics, shared state."""

from __future__ import annotations

import os
import socket
from typing import Literal

import attrs
import trio

from stem._ids import new_id
from stem.contracts import Delivery

from ._mailbox import Reply


@attrs.frozen(kw_only=True)
class WorkerConfig:
    """How one worker consumes. Durations are seconds."""

    queues: tuple[str, ...] = ("default",)
    concurrency: int = 10
    prefetch: int = -1  # extra deliveries held beyond free slots; -1: = concurrency
    grace_period: float = 30.0
    claim_wait: float = 1.0
    heartbeat_interval: float = 5.0
    revocation_poll: float = 1.0
    #: a rate-limited task waits in its slot at most this long for a token;
    #: longer waits give the delivery back (nack with that delay)
    rate_limit_hold: float = 2.0
    #: (min, max) slots, driven by backlog and idleness; None: fixed slots
    autoscale: tuple[int, int] | None = None
    autoscale_interval: float = 1.0
    #: seconds a slot surplus must stay idle before slots are retired
    autoscale_idle: float = 5.0
    worker_id: str = attrs.field(
        factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{new_id()[-8:]}"
    )

    def __attrs_post_init__(self) -> None:
        if self.autoscale is not None:
            low, high = self.autoscale
            if not 1 <= low <= high:
                raise ValueError(
                    f"autoscale must be (min, max) with 1 <= min <= max, "
                    f"got {self.autoscale!r}"
                )
            object.__setattr__(self, "concurrency", high)
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if not self.queues:
            raise ValueError("a worker needs at least one queue")
        if self.grace_period < 0:
            raise ValueError("grace_period must be >= 0")
        for name in ("autoscale_interval", "autoscale_idle", "claim_wait"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0 seconds")
        if self.rate_limit_hold < 0:
            raise ValueError("rate_limit_hold must be >= 0 seconds")

    @property
    def capacity(self) -> int:
        """Deliveries held at most (running + prefetched), at full size."""
        extra = self.concurrency if self.prefetch < 0 else self.prefetch
        return self.concurrency + extra

    @property
    def min_slots(self) -> int:
        return self.concurrency if self.autoscale is None else self.autoscale[0]


# -- messages -------------------------------------------------------------


@attrs.frozen(kw_only=True, eq=False)
class Stop:
    """Stop gracefully: no new work; running tasks get ``grace`` seconds."""

    grace: float | None = None


@attrs.frozen(kw_only=True, eq=False)
class Terminate:
    """Cancel the running attempt of ``task_id`` (revoke with terminate)."""

    task_id: str
    reason: str = "revoked"


@attrs.frozen(kw_only=True, eq=False)
class Inspect:
    reply: Reply[WorkerStatistics]


WorkerMessage = Stop | Terminate | Inspect

ShutdownMode = Literal["warm", "soft", "hard"]
SHUTDOWN_MODES = ("warm", "soft", "hard")


@attrs.frozen(kw_only=True)
class ActiveTask:
    task_id: str
    name: str
    attempt: int
    started_at: float


@attrs.frozen(kw_only=True)
class WorkerStatistics:
    worker_id: str
    queues: tuple[str, ...]
    concurrency: int
    held: int
    active: tuple[ActiveTask, ...]
    processed: int
    succeeded: int
    failed: int
    retried: int
    dead_lettered: int
    revoked: int
    rate_limited: int = 0
    slots: int = 0
    paused: tuple[str, ...] = ()


@attrs.define(eq=False)
class Running:
    delivery: Delivery
    scope: trio.CancelScope
    started_at: float
    name: str
    attempt: int
    cancel_reason: str | None = None


@attrs.define(eq=False)
class WorkerState:
    """Shared between the client's handle and each worker incarnation."""

    stop_requested: trio.Event = attrs.field(factory=trio.Event)
    stopped: trio.Event = attrs.field(factory=trio.Event)
    ready: trio.Event = attrs.field(factory=trio.Event)
    grace: float | None = None
