"""Canvas on Redis and PostgreSQL (throwaway servers; skipped with the reason
when a server cannot be started outside CI)."""

from __future__ import annotations

from typing import Any

import pytest
import trio

import stem

sig = stem.signature


def make_tasks(calls: list[str]) -> list[Any]:
    @stem.task("add1")
    async def add1(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
        calls.append("add1")
        return int(ctx.previous_result or 0) + int(args.get("n", 1))

    @stem.task("sum")
    async def total(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
        calls.append("sum")
        return sum(ctx.previous_result)

    @stem.task("boom")
    async def boom(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        raise ValueError("member broke")

    return [add1, total, boom]


@pytest.mark.parametrize(
    "factory_name",
    [
        "redis_backend_factory",
        "redis_cluster_backend_factory",
        "postgres_backend_factory",
    ],
)
async def test_canvas_forms_on_server_backends(
    request: pytest.FixtureRequest, factory_name: str
) -> None:
    """Chain, group, chord and a failing chord behave as on memory and SQLite."""
    factory = request.getfixturevalue(factory_name)
    calls: list[str] = []
    async with factory() as backend:
        async with (
            stem.Client(backend=backend, tasks=make_tasks(calls)) as client,
            client.worker(concurrency=4, claim_wait=0.2),
        ):
            with trio.fail_after(60):
                chain = await client.canvas.chain([sig("add1")] * 3)
                group = await client.canvas.group(
                    [sig("add1", {"n": i}) for i in range(5)]
                )
                chord = await client.canvas.chord(
                    [sig("add1", {"n": i}) for i in range(10)], callback=sig("sum")
                )
                failing = await client.canvas.chord(
                    [sig("add1"), sig("boom")], callback=sig("sum")
                )
                assert await chain.get() == 3
                assert await group.get() == [0, 1, 2, 3, 4]
                assert await chord.get() == 45
                with pytest.raises(stem.TaskFailed, match="member broke"):
                    await failing.get()
    assert calls.count("sum") == 1
