"""Autoscaling a worker's slots between ``(min, max)`` (opt-in).

Every ``autoscale_interval`` seconds the worker looks at its backlog (the
deliveries it holds but has not started, plus the ready messages of its
unpaused queues from ``broker.stats``: one backend call per queue per
interval, never per task) and at how many slots are busy:

* backlog and every slot busy -> grow by the backlog (up to ``max``);
* some slots idle and no backlog for ``autoscale_idle`` seconds -> shrink to
  the busy count (never below ``min``). Idle slots stop at once; a busy slot
  asked to stop finishes its task first.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import attrs
import trio

from stem._errors import BrokerUnavailable

if TYPE_CHECKING:
    from ._worker import Worker

logger = logging.getLogger("stem.autoscale")


@attrs.frozen(kw_only=True)
class ScaleDecision:
    """Slots to add (> 0) or retire (< 0); 0 keeps the size."""

    delta: int
    idle_since: float | None


def decide(
    *,
    slots: int,
    busy: int,
    backlog: int,
    low: int,
    high: int,
    at: float,
    idle_since: float | None,
    idle_after: float,
) -> ScaleDecision:
    """The scaling policy, as a pure function of one observation."""
    if backlog > 0 and busy >= slots:
        return ScaleDecision(delta=min(backlog, high - slots), idle_since=None)
    if busy < slots and backlog == 0 and slots > low:
        if idle_since is None:
            return ScaleDecision(delta=0, idle_since=at)
        if at - idle_since >= idle_after:
            return ScaleDecision(delta=max(busy, low) - slots, idle_since=None)
        return ScaleDecision(delta=0, idle_since=idle_since)
    return ScaleDecision(delta=0, idle_since=None)


async def run_autoscaler(worker: Worker) -> None:
    """Resize ``worker``'s slots until cancelled."""
    cfg = worker.config
    assert cfg.autoscale is not None
    low, high = cfg.autoscale
    idle_since: float | None = None
    while True:
        await trio.sleep(cfg.autoscale_interval)
        backlog = worker.unstarted()
        if backlog == 0:
            for queue in cfg.queues:
                if queue in worker.paused:
                    continue
                try:
                    backlog += (await worker.backend.broker.stats(queue)).pending
                except BrokerUnavailable as exc:
                    logger.debug("autoscale: no queue stats: %s", exc)
        stats = worker.worker_statistics()
        decision = decide(
            slots=stats.slots,
            busy=len(stats.active),
            backlog=backlog,
            low=low,
            high=high,
            at=trio.current_time(),
            idle_since=idle_since,
            idle_after=cfg.autoscale_idle,
        )
        idle_since = decision.idle_since
        if decision.delta > 0:
            worker.add_slots(decision.delta)
        elif decision.delta < 0:
            worker.retire_slots(-decision.delta)
