"""Tasks the benchmark scripts run (``benchmarks.bench_app:app``).

``bench.pickup`` records its pickup latency (start minus the envelope's
``enqueued_at``, both on stem's clock) in :data:`PICKUPS` of the worker's
process. ``recovery_app`` holds the one task of ``recovery.py``, with a short
visibility timeout kept apart so it does not shorten the other tasks' claim
lease (the worker claims with the shortest visibility timeout of its app).
"""

from __future__ import annotations

from typing import Any

import trio

import stem

#: pickup latencies (seconds) seen by this process's bench.pickup runs
PICKUPS: list[float] = []

#: visibility timeout of bench.hold: a killed worker's tasks return after it
HOLD_LEASE = 5.0


@stem.task("bench.noop")
async def noop(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
    """Do nothing."""


@stem.task("bench.sleep")
async def sleep(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
    """Sleep ``args["ms"]`` milliseconds."""
    await trio.sleep(args["ms"] / 1000)


@stem.task("bench.pickup")
async def pickup(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
    """Record how long this task waited between enqueue and start."""
    PICKUPS.append(stem.now() - ctx.envelope.enqueued_at)


@stem.task("bench.echo")
async def echo(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
    """Sleep 2 ms and return ``args["n"]`` (the soak's task)."""
    await trio.sleep(0.002)
    return int(args["n"])


@stem.task("bench.hold", visibility_timeout=HOLD_LEASE)
async def hold(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
    """Sleep ``args["s"]`` seconds and return ``args["n"]``."""
    await trio.sleep(args["s"])
    return int(args["n"])


app = stem.App([noop, sleep, pickup, echo])
recovery_app = stem.App([hold])
