"""Tasks for the dashboard tests: ``--app tests.dashboard_app:app``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import stem


@stem.task("dash.add")
async def add(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
    ctx.progress(1, 1, "added")
    return int(args["a"]) + int(args["b"])


@stem.task("dash.flaky", max_retries=0)
async def flaky(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
    """Fails until the file ``args["gate"]`` exists (a replay then works)."""
    if not Path(args["gate"]).exists():
        raise RuntimeError(f"gate {os.path.basename(args['gate'])} is closed")
    return "passed the gate"


app = stem.App([add, flaky])
