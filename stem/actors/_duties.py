"""A worker's background duties: the heartbeat and the revocation poll.

Each takes what it needs (the backend's store, the configuration, a way to
read or tell the worker), never the Worker itself: they change none of its
state.

On a backend shared by several processes both run on a timer: other
processes learn from the heartbeat that this worker lives, and the poll
catches a terminate order whose broadcast was missed. On an in-process
backend (``Capabilities.cross_process=False``) no other process can look or
write, so neither needs a timer: the heartbeat is kept until the worker
removes it and rewritten only when the worker's counts change, the
revocation poll is a fallback every five minutes behind the broadcast, and
a claim waits until it is woken. An idle worker then hardly ever wakes,
which is what lets a ``MockClock`` test jump a simulated day at once
(docs/decisions.md).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable

import attrs
import trio

from stem._clock import now
from stem._errors import BrokerUnavailable
from stem._workerconfig import WorkerConfig
from stem.contracts import Capabilities, HeartbeatStore, RevocationStore, WorkerInfo

from ._workerstate import WorkerStatistics

logger = logging.getLogger("stem.worker")


#: The revocation poll of a worker on an in-process backend (seconds): a
#: fallback behind the broadcast, which in one process is only missed when
#: the control inbox is full.
IN_PROCESS_REVOCATION_POLL = 300.0
#: The heartbeat ttl on an in-process backend: the worker itself removes the
#: record when it stops, and nothing outlives the process anyway.
IN_PROCESS_HEARTBEAT_TTL = 10 * 365 * 86400.0


#: How long a claim on an in-process backend waits: every publish, nack and
#: due time wakes it, so it never needs to look again on a timer.
IN_PROCESS_CLAIM_WAIT = 3600.0


@attrs.frozen
class Timers:
    """The periods a worker's loops use on one backend."""

    claim_wait: float
    revocation_poll: float
    beat_on_timer: bool
    #: a waiting claim may be cancelled (pause/resume): it loses nothing
    interruptible: bool


def timers_for(config: WorkerConfig, capabilities: Capabilities) -> Timers:
    """``config``'s periods, or on an in-process backend the event-driven
    ones (see the module docstring)."""
    if capabilities.cross_process:
        return Timers(
            claim_wait=config.claim_wait,
            revocation_poll=config.revocation_poll,
            beat_on_timer=True,
            interruptible=False,
        )
    return Timers(
        claim_wait=max(config.claim_wait, IN_PROCESS_CLAIM_WAIT),
        revocation_poll=max(config.revocation_poll, IN_PROCESS_REVOCATION_POLL),
        beat_on_timer=False,
        interruptible=True,
    )


class Activity:
    """A count of the changes a heartbeat reports (tasks started and
    finished, slots, paused queues); the heartbeat waits for it to move."""

    def __init__(self) -> None:
        self.count = 0
        self._moved: trio.Event | None = None

    def touch(self) -> None:
        self.count += 1
        if self._moved is not None:
            self._moved.set()
            self._moved = None

    async def wait_past(self, seen: int) -> None:
        """Return once :attr:`count` differs from ``seen``."""
        while self.count == seen:
            if self._moved is None:
                self._moved = trio.Event()
            await self._moved.wait()


async def heartbeat(
    store: HeartbeatStore,
    config: WorkerConfig,
    statistics: Callable[[], WorkerStatistics],
    *,
    started_at: float,
    on_beat: Callable[[], None],
    activity: Activity | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Store a :class:`WorkerInfo` every ``heartbeat_interval`` seconds with a
    ttl of three intervals (``client.workers()`` lists the live ones).

    With ``activity`` (an in-process backend) the record is kept until the
    worker removes it and is rewritten only once ``activity`` moved, at most
    every interval.

    Reports started after the first beat is stored, so a worker is listed
    (and remote control expects its reply) from the moment it is ready."""
    ttl = (
        IN_PROCESS_HEARTBEAT_TTL
        if activity is not None
        else config.heartbeat_interval * 3
    )
    while True:
        seen = activity.count if activity is not None else 0
        stats = statistics()
        info = WorkerInfo(
            worker_id=config.worker_id,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            queues=config.queues,
            concurrency=config.concurrency,
            started_at=started_at,
            last_seen=now(),
            active=len(stats.active),
            processed=stats.processed,
            meta={
                "slots": stats.slots,
                "paused": list(stats.paused),
                "abandoned_threads": len(stats.abandoned),
            },
        )
        try:
            await store.beat(info, ttl=ttl)
        except BrokerUnavailable as exc:
            logger.warning("heartbeat failed: %s", exc)
        on_beat()
        task_status.started()
        task_status = trio.TASK_STATUS_IGNORED
        await trio.sleep(config.heartbeat_interval)
        if activity is not None:
            await activity.wait_past(seen)


async def watch_revocations(
    store: RevocationStore, poll: float, terminate: Callable[[str, str], object]
) -> None:
    """Cancel running tasks revoked with ``terminate=True``, polled every
    ``poll`` seconds: the fallback for a missed broadcast (remote control
    delivers the same order at once)."""
    version = 0
    while True:
        try:
            changes, version = await store.changes_since(version)
        except BrokerUnavailable:
            changes = []
        for rev in changes:
            if rev.terminate:
                terminate(rev.task_id, rev.reason)
        await trio.sleep(poll)
