"""Lifecycle events cross processes through the backend's event log: a
`stem worker` process relays them while someone listens, and
`client.events()` and `stem events --follow` in another process see them."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import trio

import stem
from stem._signals import TaskEvent
from tests.cli_process import ROOT, STEM, run_stem
from tests.integration.test_worker_process_exit import exit_code, start


@pytest.fixture(params=["sqlite", "redis", "redis_cluster"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/events.db"
    if request.param == "redis_cluster":
        cluster = request.getfixturevalue("redis_cluster")
        return f"{cluster.url}?namespace=ev{uuid.uuid4().hex[:10]}"
    server = request.getfixturevalue("redis_server")
    return f"{server.url}?namespace=ev{uuid.uuid4().hex[:10]}"


async def test_client_events_see_another_process(
    shared_url: str, tmp_path: Path
) -> None:
    """Tasks run by a `stem worker` process show up in this process's
    client.events() as received, started and succeeded/failed events that
    name the worker's node, in order, and the worker comes online."""
    err = tmp_path / "worker.err"
    async with stem.Client.from_url(shared_url) as client:
        signals = ("worker_ready", "task_prerun", "task_succeeded", "task_failed")
        async with client.events(*signals) as events:
            proc = start(
                [STEM, "worker", "--app", "tests.cli_app:app", "--url", shared_url],
                err,
            )
            try:
                seen: list[Any] = []
                with trio.fail_after(60):
                    async for event in events:
                        seen.append(event)
                        if event.signal == "worker_ready":
                            ok = await client.enqueue("cli.add", {"a": 2, "b": 3})
                            bad = await client.enqueue("cli.boom", {"n": 7})
                        finals = {"task_succeeded", "task_failed"}
                        if len([e for e in seen if e.signal in finals]) == 2:
                            break
            finally:
                proc.terminate()
                await exit_code(proc)
    assert all(e.origin for e in seen), seen
    assert len({e.origin for e in seen}) == 1
    assert seen[0].signal == "worker_ready"
    by_task = {
        e.task_id: e
        for e in seen
        if isinstance(e, TaskEvent) and e.signal != "task_prerun"
    }
    assert by_task[ok].signal == "task_succeeded"
    assert by_task[ok].value == 5
    assert by_task[bad].signal == "task_failed"
    assert by_task[bad].error is not None
    assert by_task[bad].error.message == "boom 7"
    started = [e.task_id for e in seen if e.signal == "task_prerun"]
    assert set(started) == {ok, bad}


async def test_stem_events_follow_json(tmp_path: Path) -> None:
    """`stem events --follow --json --count N` prints one JSON object per
    event of another process's worker, then exits 0; without --follow it
    prints the newest kept events."""
    url = f"sqlite:///{tmp_path}/follow.db"
    err = tmp_path / "worker.err"
    follower = subprocess.Popen(
        [
            STEM,
            "events",
            "--follow",
            "--json",
            "--count",
            "2",
            "--url",
            url,
            "--signal",
            "task_succeeded",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    worker: Any = None
    try:
        async with stem.Client.from_url(url) as client:
            with trio.fail_after(30):
                while not await client.event_log().listeners():  # type: ignore[union-attr]
                    await trio.sleep(0.05)
            worker = start(
                [STEM, "worker", "--app", "tests.cli_app:app", "--url", url], err
            )
            ids = [await client.enqueue("cli.add", {"a": i, "b": 1}) for i in range(2)]
        out, errs = await trio.to_thread.run_sync(
            lambda: follower.communicate(timeout=60)
        )
    finally:
        if follower.poll() is None:
            follower.kill()
        if worker is not None:
            worker.terminate()
            await exit_code(worker)
    assert follower.returncode == 0, errs
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["signal"] for r in records] == ["task_succeeded"] * 2
    assert sorted(r["task_id"] for r in records) == sorted(ids)
    assert sorted(r["value"] for r in records) == [1, 2]
    history = await trio.to_thread.run_sync(
        lambda: run_stem("events", "--url", url, "--signal", "task_succeeded")
    )
    assert history.returncode == 0, history.stderr
    lines = history.stdout.splitlines()
    assert len(lines) == 2
    assert all("task_succeeded" in line and "name=cli.add" in line for line in lines)


def test_stem_events_on_memory_is_one_line_error() -> None:
    """`stem events` on the in-memory backend says why in one line, exit 1."""
    proc = run_stem("events", "--url", "memory://")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("stem: ") and "event log" in proc.stderr
