"""The Worker's records: messages, statistics, the state shared across
restarts. Its configuration is :class:`stem._workerconfig.WorkerConfig`."""

from __future__ import annotations

from typing import Literal

import attrs
import trio

from stem.contracts import Delivery

from ._mailbox import Reply
from ._threads import AbandonedThread

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
    #: threads of sync attempts given up at a limit and still running
    abandoned: tuple[AbandonedThread, ...] = ()


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
