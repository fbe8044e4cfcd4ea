"""Workflows end to end on SQLite, Redis and PostgreSQL (real time, one
process; the server backends use throwaway servers and skip with the reason
when one cannot be started outside CI)."""

from __future__ import annotations

from typing import Any

import pytest
import trio

import stem
from stem import WorkflowContext


def make_app(calls: list[str]) -> stem.App:
    @stem.task("wf.charge")
    async def charge(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
        calls.append("charge")
        return int(args["amount"]) * 100

    async def child(wf: WorkflowContext) -> str:
        await wf.sleep(0.2)
        return f"child of {wf.params['parent']}"

    async def order(wf: WorkflowContext) -> dict[str, Any]:
        cents = await wf.activity("wf.charge", args={"amount": wf.params["amount"]})
        await wf.sleep(0.3)
        approval = await wf.wait_for_event("approve", timeout=30)
        note = await wf.child("wf.child", {"parent": wf.run_id})
        early = await wf.wait_for_event("early", timeout=30)
        return {"cents": cents, "approval": approval, "note": note, "early": early}

    async def stuck(wf: WorkflowContext) -> None:
        await wf.wait_for_event("never", timeout=600)

    return stem.App(
        tasks=[charge],
        workflows=[
            stem.WorkflowScript("wf.order", order),
            stem.WorkflowScript("wf.child", child),
            stem.WorkflowScript("wf.stuck", stuck),
        ],
    )


@pytest.mark.parametrize(
    "factory_name",
    [
        "sqlite_backend_factory",
        "redis_backend_factory",
        "redis_cluster_backend_factory",
        "postgres_backend_factory",
    ],
)
async def test_workflow_runs_on_each_backend(
    request: pytest.FixtureRequest, factory_name: str
) -> None:
    """An activity, a durable sleep, emit and send events, a child run and a
    cancel behave the same on every persistent backend."""
    factory = request.getfixturevalue(factory_name)
    calls: list[str] = []
    async with factory() as backend:
        async with (
            stem.Client(backend=backend, app=make_app(calls)) as client,
            client.worker(concurrency=4, claim_wait=0.2),
        ):
            with trio.fail_after(60):
                run_id = await client.workflows.start("wf.order", params={"amount": 3})
                await client.workflows.send(run_id, "early", "kept for later")
                while await client.workflows.emit("approve", {"by": "ann"}) != [run_id]:
                    await trio.sleep(0.05)
                run = await client.workflows.wait(run_id, timeout=30)
                stuck = await client.workflows.start("wf.stuck")
                while (await client.workflows.get(stuck)).status != "suspended":  # type: ignore[union-attr]
                    await trio.sleep(0.05)
                assert await client.workflows.cancel(stuck)
                with pytest.raises(stem.WorkflowCancelled):
                    await client.workflows.wait(stuck, timeout=30)
    assert run.result == {
        "cents": 300,
        "approval": {"by": "ann"},
        "note": f"child of {run_id}",
        "early": "kept for later",
    }
    assert [s.kind for s in run.history] == [
        "activity",
        "sleep",
        "event",
        "child",
        "event",
    ]
    assert calls == ["charge"]


def test_order_example_runs() -> None:
    """examples/order_workflow.py completes its run and prints each step."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent.parent
    out = subprocess.run(
        [sys.executable, str(root / "examples" / "order_workflow.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "status: completed" in out
    assert "shipped A1 from dock 7" in out
    assert "sleep" in out
