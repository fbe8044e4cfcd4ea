"""Changing a workflow under running runs: wf.patched(), deprecate_patch()
and versions registered side by side; in memory under Trio's MockClock."""

from __future__ import annotations

from typing import Any

import pytest
import trio

import stem
from stem import WorkflowContext


def charge_tasks(log: list[str]) -> list[Any]:
    @stem.task("charge.v1")
    async def v1(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
        log.append(f"v1 {args['order']}")
        return "v1"

    @stem.task("charge.v2")
    async def v2(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
        log.append(f"v2 {args['order']}")
        return "v2"

    return [v1, v2]


async def old_order(wf: WorkflowContext) -> list[Any]:
    order = await wf.step("validate", lambda: wf.params["order"])
    charged = await wf.activity("charge.v1", args={"order": order})
    await wf.sleep(100)
    return [order, charged]


async def patched_order(wf: WorkflowContext) -> list[Any]:
    order = await wf.step("validate", lambda: wf.params["order"])
    if wf.patched("charge-v2"):
        charged = await wf.activity("charge.v2", args={"order": order})
    else:
        charged = await wf.activity("charge.v1", args={"order": order})
    await wf.sleep(100)
    return [order, charged]


async def deprecated_order(wf: WorkflowContext) -> list[Any]:
    order = await wf.step("validate", lambda: wf.params["order"])
    wf.deprecate_patch("charge-v2")
    charged = await wf.activity("charge.v2", args={"order": order})
    await wf.sleep(100)
    return [order, charged]


async def test_patched_keeps_a_running_run_on_its_old_path(
    autojump_clock: Any,
) -> None:
    """A run that charged with v1 before the patch was deployed replays its
    v1 charge (False, no step taken); a run started after takes v2 and
    records the marker."""
    log: list[str] = []
    tasks = charge_tasks(log)
    old = stem.App(tasks=tasks, workflows=[stem.WorkflowScript("order", old_order)])
    new = stem.App(tasks=tasks, workflows=[stem.WorkflowScript("order", patched_order)])
    async with stem.Client.in_memory(app=old) as before:
        async with before.worker():
            running = await before.workflows.start("order", {"order": "A"})
            await trio.sleep(10)  # charged, now sleeping
        async with stem.Client(backend=before.backend, app=new) as after:
            async with after.worker():
                fresh = await after.workflows.start("order", {"order": "B"})
                done_old = await after.workflows.wait(running, timeout=600)
                done_new = await after.workflows.wait(fresh, timeout=600)
    assert done_old.result == ["A", "v1"]
    assert done_new.result == ["B", "v2"]
    assert log == ["v1 A", "v2 B"]
    assert [s.kind for s in done_old.history] == ["step", "activity", "sleep"]
    assert [(s.kind, s.name) for s in done_new.history] == [
        ("step", "validate"),
        ("patch", "charge-v2"),
        ("activity", "charge.v2"),
        ("sleep", "sleep"),
    ]


async def test_a_run_reaching_the_patch_for_the_first_time_takes_the_new_path(
    autojump_clock: Any,
) -> None:
    """A run that had not got to the patched call when the code changed takes
    the new path there."""
    log: list[str] = []

    async def waits_first(wf: WorkflowContext) -> str:
        await wf.sleep(50)
        if wf.patched("charge-v2"):
            return str(await wf.activity("charge.v2", args={"order": "C"}))
        return str(await wf.activity("charge.v1", args={"order": "C"}))

    async def waits_old(wf: WorkflowContext) -> str:
        await wf.sleep(50)
        return str(await wf.activity("charge.v1", args={"order": "C"}))

    tasks = charge_tasks(log)
    old = stem.App(tasks=tasks, workflows=[stem.WorkflowScript("w", waits_old)])
    new = stem.App(tasks=tasks, workflows=[stem.WorkflowScript("w", waits_first)])
    async with stem.Client.in_memory(app=old) as before:
        async with before.worker():
            run_id = await before.workflows.start("w")
            await trio.sleep(10)
        async with stem.Client(backend=before.backend, app=new) as after:
            async with after.worker():
                run = await after.workflows.wait(run_id, timeout=600)
    assert run.result == "v2"
    assert log == ["v2 C"]


async def test_deprecate_patch_replays_marked_runs_and_marks_no_new_ones(
    autojump_clock: Any,
) -> None:
    """Once no run takes the old path, deprecate_patch replays histories
    that hold the marker, and new runs record none."""
    log: list[str] = []
    tasks = charge_tasks(log)
    patched = stem.App(
        tasks=tasks, workflows=[stem.WorkflowScript("order", patched_order)]
    )
    cleaned = stem.App(
        tasks=tasks, workflows=[stem.WorkflowScript("order", deprecated_order)]
    )
    async with stem.Client.in_memory(app=patched) as before:
        async with before.worker():
            marked = await before.workflows.start("order", {"order": "A"})
            await trio.sleep(10)
        async with stem.Client(backend=before.backend, app=cleaned) as after:
            async with after.worker():
                fresh = await after.workflows.start("order", {"order": "B"})
                one = await after.workflows.wait(marked, timeout=600)
                two = await after.workflows.wait(fresh, timeout=600)
    assert (one.result, two.result) == (["A", "v2"], ["B", "v2"])
    assert "patch" in [s.kind for s in one.history]
    assert "patch" not in [s.kind for s in two.history]
    assert log == ["v2 A", "v2 B"]


async def test_versions_side_by_side_during_a_deploy(autojump_clock: Any) -> None:
    """With versions 1 and 2 registered, a version-1 run keeps replaying the
    version-1 code and new runs start on version 2; an engine that only has
    version 1 leaves version-2 runs to one that has it."""
    log: list[str] = []
    tasks = charge_tasks(log)
    v1 = stem.WorkflowScript("order", old_order, version=1)
    v2_fn = deprecated_order  # a different sequence of steps
    v2 = stem.WorkflowScript("order", v2_fn, version=2)
    old_app = stem.App(tasks=tasks, workflows=[v1])
    new_app = stem.App(tasks=tasks, workflows=[v1, v2])
    async with stem.Client.in_memory(app=old_app) as old_node:
        async with old_node.worker():
            first = await old_node.workflows.start("order", {"order": "A"})
            await trio.sleep(10)
            async with stem.Client(backend=old_node.backend, app=new_app) as new_node:
                second = await new_node.workflows.start("order", {"order": "B"})
                await trio.sleep(30)
                waiting = await new_node.workflows.get(second)
                assert waiting is not None
                assert (waiting.status, waiting.version) == ("pending", 2)
                async with new_node.worker():
                    one = await new_node.workflows.wait(first, timeout=600)
                    two = await new_node.workflows.wait(second, timeout=600)
    assert (one.version, one.result) == (1, ["A", "v1"])
    assert (two.version, two.result) == (2, ["B", "v2"])
    assert sorted(log) == ["v1 A", "v2 B"]


async def test_app_registers_each_version_once() -> None:
    """Two versions of one name register side by side; the same version
    twice is refused; app.workflows names the newest."""

    async def fn(wf: WorkflowContext) -> None:
        return None

    one = stem.WorkflowScript("w", fn, version=1)
    two = stem.WorkflowScript("w", fn, version=2)
    app = stem.App(workflows=[two, one])
    assert app.workflows["w"] is two
    assert dict(app.workflow_versions["w"]) == {1: one, 2: two}
    with pytest.raises(stem.DuplicateTask, match="version 2"):
        app.register_workflow(stem.WorkflowScript("w", fn, version=2))
