"""A worker's background duties: lease renewal, heartbeat, revocation poll."""

from __future__ import annotations

import logging
import os
import socket
from typing import TYPE_CHECKING

import attrs
import trio

from stem._clock import now
from stem._errors import BrokerUnavailable
from stem._options import DEFAULT_VISIBILITY_TIMEOUT
from stem.contracts import Delivery, WorkerInfo

if TYPE_CHECKING:
    from ._worker import Worker

logger = logging.getLogger("stem.worker")


async def heartbeat(
    worker: Worker, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Store a :class:`WorkerInfo` every ``heartbeat_interval`` seconds with a
    ttl of three intervals (``client.workers()`` lists the live ones).

    Reports started after the first beat is stored, so a worker is listed
    (and remote control expects its reply) from the moment it is ready."""
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
        task_status.started()
        task_status = trio.TASK_STATUS_IGNORED
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


async def renew_leases(worker: Worker) -> None:
    """Renew the leases of everything the worker holds, in batches, a third of
    the way into each lease; also forwards messages that waited while the
    broker actor's inbox was full."""
    while True:
        while worker._backlog:
            await worker.broker.tell(worker._backlog[0])
            worker._backlog.pop(0)
        if not worker._held:
            worker._new_held = trio.Event()
            await worker._new_held.wait()
            continue
        at = now()
        due: list[Delivery] = []
        next_check = float("inf")
        for receipt, delivery in list(worker._held.items()):
            length = worker._lease_len.get(receipt, DEFAULT_VISIBILITY_TIMEOUT)
            renew_at = delivery.lease_until - length * 2 / 3
            if renew_at <= at:
                due.append(delivery)
            else:
                next_check = min(next_check, renew_at)
        if due:
            await _extend(worker, due)
            continue
        worker._new_held = trio.Event()
        with trio.move_on_after(max(next_check - at, 0.01)):
            await worker._new_held.wait()


async def _extend(worker: Worker, due: list[Delivery]) -> None:
    by_len: dict[float, list[Delivery]] = {}
    for delivery in due:
        by_len.setdefault(
            worker._lease_len.get(delivery.receipt, DEFAULT_VISIBILITY_TIMEOUT), []
        ).append(delivery)
    for length, group in by_len.items():
        try:
            flags = await worker.backend.broker.extend(group, length)
        except BrokerUnavailable as exc:
            logger.warning("lease renewal failed: %s", exc)
            await trio.sleep(min(1.0, length / 10))
            return
        at = now()
        for delivery, held in zip(group, flags, strict=True):
            if delivery.receipt not in worker._held:
                continue
            if held:
                worker._held[delivery.receipt] = attrs.evolve(
                    delivery, lease_until=at + length
                )
            else:
                logger.warning(
                    "lost the lease of %s; it may run again elsewhere",
                    delivery.task_id,
                )
                worker._held[delivery.receipt] = attrs.evolve(
                    delivery, lease_until=float("inf")
                )
