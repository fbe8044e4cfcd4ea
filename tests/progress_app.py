"""An app with routes and a task that reports progress, for the progress and
routing tests: ``--app tests.progress_app:app``."""

from __future__ import annotations

from typing import Any

import trio

import stem


@stem.task("reports.build")
async def build(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
    """Report every step of ``steps``; sleep ``pause`` s between them."""
    steps = int(args.get("steps", 3))
    for done in range(1, steps + 1):
        ctx.progress(done, steps, info={"step": done})
        await trio.sleep(float(args.get("pause", 0)))
    return steps


@stem.task("reports.urgent", queue="fast")
async def urgent(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
    return "urgent"


@stem.task("mail.send")
async def send(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
    return "sent"


app = stem.App(
    [build, urgent, send],
    routes={"reports.*": "slow", "mail.*": "mail"},
)
