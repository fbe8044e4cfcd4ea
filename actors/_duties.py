"""A worker's background duties: its heartbeat and the revocation poll."""

from __future__ import annotations

import logging
import os
import socket
from typing import TYPE_CHECKING

import trio

from stem._clock import now
from stem._errors import BrokerUnavailable
from stem.contracts import WorkerInfo

if TYPE_CHECKING:
    from ._worker import Worker

logger = logging.getLogger("stem.worker")


async def heartbeat(worker: Worker) -> None:
    """Store a :class:`WorkerInfo` every ``heartbeat_interval`` seconds with a
    ttl of three intervals (``client.workers()`` lists the live ones)."""
    cfg = worker.config
    while True:
        stats = worker.worker_statistics()
        info = WorkerInfo(
            worker_id=cfg.worker_id,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            queues=cfg.queues,
            concurrency=cfg.concurrency,
            started_at=worker.started_at,
            last_seen=now(),
            active=len(stats.active),
            processed=stats.processed,
            meta={"slots": stats.slots, "paused": list(stats.paused)},
        )
        try:
            await worker.backend.heartbeats.beat(info, ttl=cfg.heartbeat_interval * 3)
        except BrokerUnavailable as exc:
            logger.warning("heartbeat failed: %s", exc)
        worker._emit_worker("worker_heartbeat")
        await trio.sleep(cfg.heartbeat_interval)


async def watch_revocations(worker: Worker) -> None:
    """Cancel running tasks revoked with ``terminate=True``, polled every
    ``revocation_poll`` seconds: the fallback for a missed broadcast (remote
    control delivers the same order at once)."""
    version = 0
    while True:
        try:
            changes, version = await worker.backend.revocations.changes_since(version)
        except BrokerUnavailable:
            changes = []
        for rev in changes:
            if rev.terminate:
                worker.terminate(rev.task_id, rev.reason)
        await trio.sleep(worker.config.revocation_poll)
