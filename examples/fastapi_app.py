"""A FastAPI service that hands work to Stem and reads the results back.

``POST /reports`` enqueues ``reports.build`` (routed to the ``reports``
queue) and answers 202 with the task id; ``GET /reports/{task_id}`` returns
its state, progress and value (``?wait=5`` waits up to 5 s for the end).
The service holds one ``stem.asyncio.Client`` for its lifetime; uvicorn's
asyncio loop runs as usual. A worker runs the tasks::

    export STEM_URL=sqlite:///stem.db          # or redis://localhost:6379/0
    stem worker --app fastapi_app:stem_app --url $STEM_URL -Q reports &
    uvicorn fastapi_app:api                     # from this directory

    curl -X POST localhost:8000/reports -H 'content-type: application/json' \\
         -d '{"month": "2026-11", "rows": 5}'
    curl 'localhost:8000/reports/<task_id>?wait=5'
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import fastapi
import pydantic
import trio

import stem
import stem.asyncio

# -- the tasks (the worker imports this module too) ---------------------------

stem_app = stem.App(routes={"reports.*": "reports"})


@stem_app.task("reports.build", max_retries=2)
async def build_report(ctx: stem.TaskContext, args: dict[str, Any]) -> dict[str, Any]:
    """Render ``rows`` rows of a month's report, reporting progress."""
    rows = int(args["rows"])
    for done in range(1, rows + 1):
        await trio.sleep(0.01)  # the real work
        ctx.progress(done, rows, info={"stage": "render"})
    return {"month": args["month"], "rows": rows}


# -- the web service -------------------------------------------------------------


class ReportRequest(pydantic.BaseModel):
    month: str = pydantic.Field(pattern=r"^\d{4}-\d{2}$")
    rows: int = pydantic.Field(default=10, ge=1, le=10_000)


@asynccontextmanager
async def lifespan(api: fastapi.FastAPI) -> AsyncIterator[None]:
    url = os.environ.get("STEM_URL", "sqlite:///stem.db")
    async with stem.asyncio.Client(url, app=stem_app) as client:
        api.state.stem = client
        yield


api = fastapi.FastAPI(title="reports", lifespan=lifespan)


def stem_client(request: fastapi.Request) -> stem.asyncio.Client:
    client: stem.asyncio.Client = request.app.state.stem
    return client


@api.post("/reports", status_code=202)
async def create_report(
    body: ReportRequest, request: fastapi.Request
) -> dict[str, str]:
    task_id = await stem_client(request).enqueue(
        "reports.build", {"month": body.month, "rows": body.rows}
    )
    return {"task_id": task_id}


@api.get("/reports/{task_id}")
async def read_report(
    task_id: str,
    request: fastapi.Request,
    wait: float = fastapi.Query(default=0, ge=0, le=30),
) -> dict[str, Any]:
    client = stem_client(request)
    try:
        result = (
            await client.wait_for(task_id, timeout=wait)
            if wait
            else await client.get(task_id)
        )
    except stem.WaitTimeout:
        result = await client.get(task_id)
    except ValueError as exc:  # a task id no task could have
        raise fastapi.HTTPException(status_code=400, detail=str(exc)) from None
    if result is None:
        raise fastapi.HTTPException(status_code=404, detail="no such task")
    progress = result.progress
    return {
        "task_id": task_id,
        "state": result.state.value,
        "value": result.value,
        "error": None if result.error is None else result.error.message,
        "progress": None
        if progress is None
        else {"done": progress.done, "total": progress.total, "info": progress.info},
    }
