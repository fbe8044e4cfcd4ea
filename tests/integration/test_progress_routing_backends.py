"""Progress reports and routing rules on every backend: a routed task lands
on its queue, a worker of that queue runs it, and its progress is readable
while it runs and on its final record."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import trio

import stem
from stem import TaskState
from tests import progress_app


@pytest.fixture(params=["memory", "sqlite", "redis", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    kind = request.param
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/progress.db?poll_interval=0.02"
    if kind == "redis":
        base: str = request.getfixturevalue("redis_url")
        return f"{base}?namespace=p{uuid.uuid4().hex[:12]}"
    value: str = request.getfixturevalue("postgres_url")  # a fresh schema
    return value


async def test_routed_task_reports_progress(url: str) -> None:
    """reports.build is routed to "slow"; while it runs its record shows a
    report, and the final record shows the last one (4/4)."""
    async with stem.Client.from_url(url, app=progress_app.app) as client:
        task_id = await client.enqueue("reports.build", {"steps": 4, "pause": 0.4})
        assert (await client.queue_stats("slow")).pending == 1
        assert (await client.queue_stats("default")).pending == 0
        async with client.worker(queues=["slow"], claim_wait=0.05):
            with trio.fail_after(20):
                while True:
                    current = await client.get(task_id)
                    assert current is not None
                    if current.progress is not None:
                        break
                    await trio.sleep(0.02)
            assert current.state is TaskState.RUNNING
            assert current.progress.total == 4
            result = await client.wait_for(task_id, timeout=20)
    assert result.state is TaskState.SUCCEEDED
    assert result.queue == "slow"
    assert result.progress is not None
    assert (result.progress.done, result.progress.info) == (4, {"step": 4})
