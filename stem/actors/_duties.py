"""A worker's background duties: the heartbeat and the revocation poll.

Each takes what it needs (the backend's store, the configuration, a way to
read or tell the worker), never the Worker itself: they change none of its
state.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable

import trio

from stem._clock import now
from stem._errors import BrokerUnavailable
from stem._workerconfig import WorkerConfig
from stem.contracts import HeartbeatStore, RevocationStore, WorkerInfo

from ._workerstate import WorkerStatistics

logger = logging.getLogger("stem.worker")


async def heartbeat(
    store: HeartbeatStore,
    config: WorkerConfig,
    statistics: Callable[[], WorkerStatistics],
    *,
    started_at: float,
    on_beat: Callable[[], None],
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Store a :class:`WorkerInfo` every ``heartbeat_interval`` seconds with a
    ttl of three intervals (``client.workers()`` lists the live ones).

    Reports started after the first beat is stored, so a worker is listed
    (and remote control expects its reply) from the moment it is ready."""
    while True:
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
            await store.beat(info, ttl=config.heartbeat_interval * 3)
        except BrokerUnavailable as exc:
            logger.warning("heartbeat failed: %s", exc)
        on_beat()
        task_status.started()
        task_status = trio.TASK_STATUS_IGNORED
        await trio.sleep(config.heartbeat_interval)


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
