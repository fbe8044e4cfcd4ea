"""Canvas on SQLite (real clock): every form, failures, and a second client
process-style handle waiting on the same file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

import stem
from stem import TaskState

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
        calls.append("boom")
        raise ValueError("member broke")

    return [add1, total, boom]


def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'canvas.db'}"


async def test_chain_group_and_chord_on_sqlite(tmp_path: Path) -> None:
    """A chain of three returns 3, a group of 5 its results in order, a chord of 10 the sum."""
    calls: list[str] = []
    async with (
        stem.Client.from_url(url(tmp_path), tasks=make_tasks(calls)) as client,
        client.worker(concurrency=4, claim_wait=0.2),
    ):
        with trio.fail_after(30):
            chain = await client.canvas.chain([sig("add1")] * 3)
            group = await client.canvas.group([sig("add1", {"n": i}) for i in range(5)])
            chord = await client.canvas.chord(
                [sig("add1", {"n": i}) for i in range(10)], callback=sig("sum")
            )
            assert await chain.get() == 3
            assert await group.get() == [0, 1, 2, 3, 4]
            assert await chord.get() == 45
    assert calls.count("sum") == 1


async def test_failing_chord_member_on_sqlite(tmp_path: Path) -> None:
    """A failed member fails the chord with its error and the callback never runs."""
    calls: list[str] = []
    async with (
        stem.Client.from_url(url(tmp_path), tasks=make_tasks(calls)) as client,
        client.worker(claim_wait=0.2),
    ):
        with trio.fail_after(30):
            handle = await client.canvas.chord(
                [sig("add1"), sig("boom"), sig("add1")], callback=sig("sum")
            )
            with pytest.raises(stem.TaskFailed, match="member broke"):
                await handle.get()
            record = await handle.result()
    assert record is not None and record.state is TaskState.FAILED
    assert "sum" not in calls


async def test_nested_canvas_on_sqlite(tmp_path: Path) -> None:
    """A chain holding a chord of chains and a group runs to the right total."""
    calls: list[str] = []
    async with (
        stem.Client.from_url(url(tmp_path), tasks=make_tasks(calls)) as client,
        client.worker(concurrency=4, claim_wait=0.2),
    ):
        with trio.fail_after(30):
            handle = await client.canvas.chain(
                [
                    sig("add1"),
                    stem.chord(
                        [stem.chain([sig("add1"), sig("add1")]), sig("add1")],
                        callback=sig("sum"),
                    ),
                    stem.group([sig("add1"), sig("add1", {"n": 2})]),
                ]
            )
            assert await handle.get() == [6, 7]


async def test_handle_from_another_client_on_the_same_file(tmp_path: Path) -> None:
    """A second client (as another process would) waits on the canvas id and is
    woken when the worker of the first client finishes it."""
    calls: list[str] = []
    async with stem.Client.from_url(url(tmp_path), tasks=make_tasks(calls)) as producer:
        handle = await producer.canvas.chord(
            [sig("add1"), sig("add1")], callback=sig("sum")
        )
        async with stem.Client.from_url(url(tmp_path), tasks=make_tasks(calls)) as node:
            other = node.canvas.handle(handle.id)
            async with node.worker(claim_wait=0.2):
                with trio.fail_after(30):
                    assert await other.get() == 2
