"""The site's Stem tasks; the worker loads them with
``stem worker --app reportsite.tasks:app`` (no Django needed)."""

from __future__ import annotations

from typing import Any

import trio

import stem

app = stem.App(routes={"reports.*": "reports"})


@app.task("reports.build", max_retries=2)
async def build_report(ctx: stem.TaskContext, args: dict[str, Any]) -> dict[str, Any]:
    """Render ``rows`` rows of a month's report, reporting progress."""
    rows = int(args["rows"])
    for done in range(1, rows + 1):
        await trio.sleep(0.01)  # the real work
        ctx.progress(done, rows, info={"stage": "render"})
    return {"month": args["month"], "rows": rows}
