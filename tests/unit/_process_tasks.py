"""Sync tasks for the process-execution tests (importable by worker processes)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import stem


@stem.task("proc.pid", execution="process")
def report_pid(ctx: stem.TaskContext, args: dict[str, Any]) -> dict[str, Any]:
    return {"pid": os.getpid(), "sum": args["a"] + args["b"], "attempt": ctx.attempt}


@stem.task("proc.spin", execution="process", hard_time_limit=1.0)
def spin(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
    Path(args["pidfile"]).write_text(str(os.getpid()))
    while True:  # CPU-bound and never checks for cancellation
        pass
