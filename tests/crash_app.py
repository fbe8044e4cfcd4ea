"""An app whose worker runtime crashes (``--app tests.crash_app:app``).

It stands in for a bug in the runtime: importing this module replaces the
Worker's claiming loop with one that raises shortly after the worker
started, every time, so the supervisor restarts the worker until it gives
up. Only the subprocess that imports this module is affected.
"""

from __future__ import annotations

from typing import Any

import trio

import stem
from stem.actors._worker import Worker


async def _crashing_fetch(self: Worker, scope: trio.CancelScope) -> None:
    await trio.sleep(0.05)
    raise RuntimeError("simulated bug in the worker's claiming loop")


Worker._fetch = _crashing_fetch  # type: ignore[method-assign]


@stem.task("crash.noop")
async def noop(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
    return None


app = stem.App(tasks=[noop])
