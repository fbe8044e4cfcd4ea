"""The dead-letter queue through the client: list, get, replay, purge."""

from __future__ import annotations

from typing import Any

import trio

import stem
from stem import TaskState


async def test_replay_resets_state_and_the_task_can_succeed(
    autojump_clock: Any,
) -> None:
    """A replayed dead letter is QUEUED again (attempt 1) and records its new outcome."""
    fixed = False

    @stem.task("fragile", queue="q")
    async def fragile(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
        if not fixed:
            raise RuntimeError("bug")
        return f"fixed on attempt {ctx.attempt}"

    async with stem.Client.in_memory(tasks=[fragile]) as client:
        async with client.worker(queues=["q"]):
            task_id = await client.enqueue("fragile")
            assert (
                await client.wait_for(task_id, timeout=10)
            ).state is TaskState.FAILED
            await client.flush()
        dlq = client.dead_letters("q")
        assert [e.task_id for e in await dlq.list()] == [task_id]
        assert await dlq.replay(task_id, dry_run=True) == [task_id]
        assert (await client.get(task_id)).state is TaskState.FAILED  # type: ignore[union-attr]
        fixed = True
        assert await dlq.replay(task_id) == [task_id]
        queued = await client.get(task_id)
        assert queued is not None and queued.state is TaskState.QUEUED
        assert await dlq.list() == []
        async with client.worker(queues=["q"]):
            result = await client.wait_for(task_id, timeout=10)
    assert result.state is TaskState.SUCCEEDED
    assert result.value == "fixed on attempt 1"


async def test_list_paging_get_and_purge(autojump_clock: Any) -> None:
    """list honours limit/offset oldest first; get finds one; purge empties."""

    @stem.task("bad")
    async def bad(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        raise ValueError(args["n"])

    async with stem.Client.in_memory(tasks=[bad]) as client:
        async with client.worker(concurrency=1, prefetch=0):
            ids = []
            for n in range(5):
                ids.append(await client.enqueue("bad", args={"n": n}))
                await client.wait_for(ids[-1], timeout=10)
                await trio.sleep(1)
            await client.flush()
        dlq = client.dead_letters()
        page = await dlq.list(limit=2, offset=1)
        assert [e.task_id for e in page] == ids[1:3]
        entry = await dlq.get(ids[4])
        assert (
            entry is not None and entry.error is not None and entry.error.message == "4"
        )
        assert await dlq.count() == 5
        assert await dlq.purge(limit=2) == 2
        assert [e.task_id for e in await dlq.list()] == ids[2:]
        assert await dlq.purge() == 3
        assert await client.queues() == ["default"]
