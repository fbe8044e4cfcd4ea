"""The app the workflow fault tests run in real service processes
(``STEM_APP=tests.wf_app:app``).

Every activity execution appends ``<kind> <task name> <task id> <pid>`` to the
file named by ``STEM_WF_LOG``, so a test can count how often each ran.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import trio

import stem
from stem import WorkflowContext

LOG_ENV = "STEM_WF_LOG"
#: The slow activity runs this many real seconds (long enough to be killed in).
SLOW_SECONDS = 3.0


def _record(kind: str, ctx: stem.TaskContext) -> None:
    path = os.environ.get(LOG_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(f"{kind} {ctx.name} {ctx.task_id} {os.getpid()}\n")


def read_log(path: Path) -> list[tuple[str, str, str, int]]:
    """Records as (kind, task name, task id, pid); kind S = started, E = ended."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        kind, name, task_id, pid = line.split()
        records.append((kind, name, task_id, int(pid)))
    return records


@stem.task("wf.a", visibility_timeout=2.0)
async def activity_a(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
    _record("S", ctx)
    _record("E", ctx)
    return f"a:{args['order']}"


@stem.task("wf.b", visibility_timeout=2.0)
async def activity_b(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
    _record("S", ctx)
    _record("E", ctx)
    return f"b:{args['after']}:{args['event']}"


@stem.task("wf.slow", visibility_timeout=2.0)
async def activity_slow(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
    _record("S", ctx)
    await trio.sleep(SLOW_SECONDS)
    _record("E", ctx)
    return "slow done"


@stem.task("wf.fail", visibility_timeout=2.0)
async def activity_fail(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
    _record("S", ctx)
    raise RuntimeError(f"cannot finish {args['order']}")


@stem.task("wf.undo", visibility_timeout=2.0)
async def activity_undo(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
    _record("S", ctx)
    _record("E", ctx)
    return f"undone {args['ref']}"


@stem.task("wf.slow_undo", visibility_timeout=2.0)
async def activity_slow_undo(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
    _record("S", ctx)
    await trio.sleep(SLOW_SECONDS)
    _record("E", ctx)
    return f"undone {args['ref']}"


async def sleep_then_event(wf: WorkflowContext) -> str:
    """Activity A, a 1 s durable sleep, a wait for event "go", activity B."""
    a = await wf.activity("wf.a", args={"order": wf.params["order"]})
    await wf.sleep(1.0)
    event = await wf.wait_for_event("go", timeout=600)
    b: str = await wf.activity("wf.b", args={"after": a, "event": event})
    return b


async def through_slow(wf: WorkflowContext) -> str:
    """Activity A, then a slow activity, then B."""
    a = await wf.activity("wf.a", args={"order": wf.params["order"]})
    slow = await wf.activity("wf.slow")
    b: str = await wf.activity("wf.b", args={"after": a, "event": slow})
    return b


async def gather_then_b(wf: WorkflowContext) -> str:
    """A and the slow activity at once (wf.gather), then B."""
    a, slow = await wf.gather(
        wf.activity("wf.a", args={"order": wf.params["order"]}),
        wf.activity("wf.slow"),
    )
    b: str = await wf.activity("wf.b", args={"after": a, "event": slow})
    return b


async def saga_then_fail(wf: WorkflowContext) -> None:
    """A (undone slowly), B (undone fast), then a step that fails: the
    compensation runs B's undo, then A's."""
    async with wf.saga() as saga:
        a = await wf.activity("wf.a", args={"order": wf.params["order"]})
        saga.add(wf.activity("wf.slow_undo", args={"ref": a}))
        b = await wf.activity("wf.b", args={"after": a, "event": "go"})
        saga.add(wf.activity("wf.undo", args={"ref": b}))
        await wf.activity("wf.fail", args={"order": wf.params["order"]})


app = stem.App(
    tasks=[
        activity_a,
        activity_b,
        activity_slow,
        activity_fail,
        activity_undo,
        activity_slow_undo,
    ],
    workflows=[
        stem.WorkflowScript("fault.sleep_then_event", sleep_then_event),
        stem.WorkflowScript("fault.through_slow", through_slow),
        stem.WorkflowScript("fault.gather_then_b", gather_then_b),
        stem.WorkflowScript("fault.saga_then_fail", saga_then_fail),
    ],
)
