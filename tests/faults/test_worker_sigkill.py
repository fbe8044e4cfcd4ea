"""Worker processes killed with SIGKILL: nothing is lost, and only tasks in
flight on the killed worker run twice; a task outliving its lease is never run
twice while its worker lives. Run on SQLite (one file), Redis, Redis Cluster
and Postgres with real ``stem worker`` processes (tests/e2e_app.py records
executions)."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest
import trio

import stem
from tests.e2e_app import (
    app,
    ended_by,
    read_log,
    run_counts,
    spawn_worker,
    started_by,
    stop_process,
)

pytestmark = pytest.mark.slow

TOTAL = 1000
CONCURRENCY = 10
#: an upper bound of the workers' claim lease (the shortest visibility_timeout
#: of the app's tasks, 2 s for tests/e2e_app.py; 30 s by default): a killed
#: worker's tasks come back after it
CLAIM_LEASE = 30.0


@pytest.fixture(params=["sqlite", "redis", "redis_cluster", "postgres"])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store on each backend, shared by separate processes."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'stem.db'}?poll_interval=0.02"
    if request.param == "redis":
        request.applymarker(pytest.mark.redis)
        server = request.getfixturevalue("redis_server")
        return f"{server.url}?namespace=k{uuid.uuid4().hex[:10]}"
    if request.param == "redis_cluster":
        request.applymarker(pytest.mark.redis)
        cluster = request.getfixturevalue("redis_cluster")
        return f"{cluster.url}?namespace=k{uuid.uuid4().hex[:10]}"
    request.applymarker(pytest.mark.postgres)
    url: str = request.getfixturevalue("postgres_url")
    return url


async def _publish(client: stem.Client, ids: list[str], sleep: float) -> None:
    for start in range(0, len(ids), 100):
        await client.publish(
            [
                client.build_envelope(
                    "e2e.work", {"n": i, "sleep": sleep}, task_id=ids[i]
                )
                for i in range(start, min(start + 100, len(ids)))
            ]
        )


async def _wait_all(client: stem.Client, ids: list[str]) -> list[stem.TaskResult]:
    results = []
    for task_id in ids:
        results.append(await client.wait_for(task_id, timeout=120))
    return results


def _check_alive(workers: list[subprocess.Popen[bytes]], errors: Path) -> None:
    for proc in workers:
        if proc.poll() is not None:
            pytest.fail(
                f"worker {proc.pid} exited with {proc.returncode}:\n"
                f"{errors.read_text()[-3000:]}"
            )


async def test_sigkilled_worker_loses_nothing(backend_url: str, tmp_path: Path):
    """1,000 tasks through two worker processes, one SIGKILLed mid-run and
    replaced, all succeed with correct results, and the only tasks that ran
    twice are ones the killed worker had started and not settled."""
    log = tmp_path / "executions.log"
    errors = tmp_path / "workers.err"
    ids = [f"task-{i:04d}" for i in range(TOTAL)]
    victim = spawn_worker(backend_url, log, concurrency=CONCURRENCY, stderr=errors)
    survivor = spawn_worker(backend_url, log, concurrency=CONCURRENCY, stderr=errors)
    workers = [victim, survivor]
    try:
        async with stem.Client.from_url(backend_url, app=app) as client:
            await _publish(client, ids, sleep=0.05)
            # Kill the victim once the run is well under way and it holds
            # started, unfinished tasks.
            with trio.fail_after(60):
                while True:
                    _check_alive(workers, errors)
                    records = read_log(log)
                    ended = sum(1 for r in records if r.kind == "E")
                    mine = started_by(records, victim.pid) - ended_by(
                        records, victim.pid
                    )
                    if ended >= TOTAL * 0.3 and mine:
                        break
                    await trio.sleep(0.02)
            victim.kill()
            await trio.to_thread.run_sync(victim.wait)
            at_kill = read_log(log)
            workers.append(
                spawn_worker(backend_url, log, concurrency=CONCURRENCY, stderr=errors)
            )
            with trio.fail_after(CLAIM_LEASE + 60):
                results = await _wait_all(client, ids)
        assert [r.state for r in results] == [stem.TaskState.SUCCEEDED] * TOTAL
        assert [r.value for r in results] == [i * 2 for i in range(TOTAL)]
    finally:
        for proc in workers:
            stop_process(proc)
    records = read_log(log)
    assert {r.task_id for r in records if r.kind == "E"} == set(ids)
    twice = {task_id for task_id, n in run_counts(records).items() if n > 1}
    assert all(run_counts(records)[t] == 2 for t in twice)
    # Only tasks in flight on the killed worker ran again: started by it and
    # not settled before the kill (started-and-unfinished ones at least).
    unfinished = started_by(at_kill, victim.pid) - ended_by(at_kill, victim.pid)
    assert unfinished, "the kill hit a worker with nothing in flight"
    assert twice <= started_by(at_kill, victim.pid)
    assert unfinished <= twice
    # What it had finished but not yet acked is bounded by its batch sizes.
    assert len(twice - unfinished) <= 2 * CONCURRENCY
    # Second runs happened elsewhere, never on the killed process.
    for task_id in twice:
        pids = [r.pid for r in records if r.kind == "S" and r.task_id == task_id]
        assert pids[0] == victim.pid
        assert pids[1] != victim.pid
    stderr = errors.read_text()
    assert "Traceback" not in stderr, stderr


async def test_task_longer_than_its_lease_runs_once(backend_url: str, tmp_path: Path):
    """Tasks with visibility_timeout=2 that run 5 s, with two live workers
    competing, each run exactly once (the lease is renewed, never lapses)."""
    log = tmp_path / "executions.log"
    errors = tmp_path / "workers.err"
    workers = [
        spawn_worker(backend_url, log, concurrency=2, stderr=errors) for _ in range(2)
    ]
    ids = [f"long-{i}" for i in range(3)]
    try:
        async with stem.Client.from_url(backend_url, app=app) as client:
            for task_id in ids:
                await client.enqueue("e2e.long", {"sleep": 5.0}, task_id=task_id)
            with trio.fail_after(45):
                results = [await client.wait_for(t, timeout=40) for t in ids]
            # Time for a wrongly expired lease to hand the task to the other
            # worker after the first run finished.
            await trio.sleep(2.5)
            assert [r.state for r in results] == [stem.TaskState.SUCCEEDED] * 3
            assert [r.attempt for r in results] == [1, 1, 1]
    finally:
        for proc in workers:
            stop_process(proc)
    counts = run_counts(read_log(log))
    assert counts == dict.fromkeys(ids, 1)
    stderr = errors.read_text()
    assert "lost the lease" not in stderr, stderr
    assert "Traceback" not in stderr, stderr
