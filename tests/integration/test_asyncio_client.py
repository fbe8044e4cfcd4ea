"""stem.asyncio.Client: the producer and reader calls awaited on an asyncio
loop that keeps running meanwhile; cancellation crosses into Trio; run
against SQLite (a file shared with a worker thread), Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

import stem
import stem.asyncio
from stem import TaskState
from tests.clients_app import app, worker_thread


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/aio.db?poll_interval=0.02"
    if request.param == "postgres":
        fresh: str = request.getfixturevalue("postgres_url")  # a fresh schema
        return fresh
    value: str = request.getfixturevalue("redis_url")
    return f"{value}?namespace=a{uuid.uuid4().hex[:12]}"


def test_the_whole_surface_from_asyncio(url: str) -> None:
    """enqueue, get, wait_for, revoke, canvas handles, workflows, dead
    letters and queue stats, awaited on asyncio while a worker runs."""

    async def main() -> None:
        async with stem.asyncio.Client(url, app=app) as client:
            task_id = await client.enqueue("clients.add", {"a": 2, "b": 3})
            result = await client.wait_for(task_id, timeout=20)
            assert (result.state, result.value) == (TaskState.SUCCEEDED, 5)
            assert await client.get(task_id) == result
            with pytest.raises(stem.EncodeError):
                await client.enqueue("clients.add", {"a": object()})
            envelope = client.build_envelope("clients.add", {"a": 4, "b": 4})
            assert await client.publish([envelope]) == [envelope.id]
            assert (await client.wait_for(envelope.id, timeout=20)).value == 8
            chord = await client.canvas.chord(
                [stem.signature("clients.add", {"a": i, "b": 1}) for i in range(3)],
                callback=stem.signature("clients.add", {"a": 0, "b": 0}),
            )
            handle = client.canvas.handle(chord.id, chord.member_ids)
            await handle.get(timeout=20)
            progress = await handle.progress()
            assert progress is not None
            assert progress.done == 3
            run_id = await client.workflows.start("clients.greet")
            for _ in range(200):
                if await client.workflows.emit("clients.name", "bo"):
                    break
                await asyncio.sleep(0.05)
            run = await client.workflows.wait(run_id, timeout=20)
            assert run.result == "hello bo 3"
            failed = await client.wait_for(
                await client.enqueue("clients.boom"), timeout=20
            )
            assert failed.state is TaskState.FAILED
            dead = client.dead_letters()
            for _ in range(200):
                if await dead.count():
                    break
                await asyncio.sleep(0.05)
            assert [e.task_id for e in await dead.list()] == [failed.task_id]
            later = await client.enqueue("clients.add", {"a": 0, "b": 0}, countdown=60)
            await client.revoke(later)
            revoked = await client.get(later)
            assert revoked is not None
            assert revoked.state is TaskState.REVOKED
            assert (await client.queue_stats()).dead == 1

    with worker_thread(url):
        asyncio.run(main())


def test_the_loop_runs_while_a_call_waits_and_cancel_crosses_over(
    tmp_path: Path,
) -> None:
    """While wait_for waits in Trio the asyncio loop serves other tasks;
    cancelling the waiting task stops the Trio call at once, and the client
    goes on working; 200 concurrent enqueues each get their own id."""
    url = f"sqlite:///{tmp_path}/aio.db"

    async def main() -> None:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        async with stem.asyncio.Client(url, app=app) as client:
            task_id = await client.enqueue("clients.add", {"a": 1, "b": 1})
            tick = asyncio.create_task(ticker())
            waiting = asyncio.create_task(client.wait_for(task_id, timeout=600))
            await asyncio.sleep(0.5)
            assert ticks >= 10  # the loop was not blocked
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(waiting, timeout=5)
            tick.cancel()
            ids = await asyncio.gather(
                *(client.enqueue("clients.add", {"a": i, "b": 0}) for i in range(200))
            )
            assert len(set(ids)) == 200
            assert (await client.queue_stats()).pending == 201
        with pytest.raises(RuntimeError, match="not open"):
            await client.get(task_id)

    asyncio.run(main())


def test_a_backend_that_cannot_open_raises_in_aenter(tmp_path: Path) -> None:
    """Opening on a bad URL raises the client's own error on the asyncio
    side, and the shared Trio thread keeps serving other clients."""

    async def main() -> None:
        with pytest.raises(ValueError):
            async with stem.asyncio.Client("nosuch://x"):
                pass
        async with stem.asyncio.Client(f"sqlite:///{tmp_path}/ok.db") as client:
            assert await client.queues() == []

    asyncio.run(main())
