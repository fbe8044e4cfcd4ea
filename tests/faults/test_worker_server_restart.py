"""The server behind two ``stem worker`` processes is killed and restarted
mid-run (Redis with an append-only file, Postgres with its data directory):
every task still completes with its correct result."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio

import stem
from tests._servers import free_port, missing
from tests.e2e_app import app, read_log, spawn_worker, stop_process
from tests.fixtures_postgres import PostgresCluster, _bindir, fresh_schema_url
from tests.fixtures_redis import RedisServer

pytestmark = pytest.mark.slow

TOTAL = 1000


class _Server:
    """What the test needs from a throwaway server: a URL, a kill, a start."""

    def __init__(
        self, url: str, kill: Callable[[], None], start: Callable[[], None]
    ) -> None:
        self.url = url
        self.kill = kill
        self.start = start


@pytest.fixture(params=["redis", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[_Server]:
    """A private server the test may kill and start again on the same port
    and data directory."""
    if request.param == "redis":
        request.applymarker(pytest.mark.redis)
        redis = RedisServer(tmp_path / "redis", appendonly=True)
        redis.directory.mkdir()
        redis.start()
        try:
            yield _Server(f"{redis.url}?namespace=restart", redis.kill, redis.start)
        finally:
            redis.stop()
        return
    request.applymarker(pytest.mark.postgres)
    bindir = _bindir()
    if bindir is None:
        missing("PostgreSQL binaries (initdb, pg_ctl) not found")
    # Not under pytest's tmp dir: initdb runs as user postgres.
    base = Path(tempfile.mkdtemp(prefix="stem-pg-"))
    cluster = _DurableCluster(bindir=bindir, datadir=base / "data", port=free_port())
    try:
        cluster.init()
        cluster.start()
        # "immediate" is a crash: no shutdown checkpoint, recovery from WAL.
        yield _Server(
            fresh_schema_url(cluster.url),
            lambda: cluster.stop("immediate"),
            cluster.start,
        )
    finally:
        cluster.destroy()


class _DurableCluster(PostgresCluster):
    """The fixtures' cluster with ``synchronous_commit=on``: the shared
    fixture turns it off for speed, and then a crash may drop transactions
    the server had already confirmed (a stored result whose ack survives),
    which no client can defend against."""

    def _options(self) -> str:
        return f"{super()._options()} -c synchronous_commit=on"


def _check_alive(workers: list[subprocess.Popen[bytes]], errors: Path) -> None:
    for proc in workers:
        if proc.poll() is not None:
            pytest.fail(
                f"worker {proc.pid} exited with {proc.returncode}:\n"
                f"{errors.read_text()[-3000:]}"
            )


async def _wait_surviving_outages(
    client: stem.Client, task_id: str, timeout: float, log: Path
) -> stem.TaskResult:
    with trio.move_on_after(timeout):
        while True:
            try:
                return await client.wait_for(task_id, timeout=timeout)
            except stem.BrokerUnavailable:
                await trio.sleep(0.2)
    stored = await client.get(task_id)
    stats = await client.queue_stats()
    ran = [r for r in read_log(log) if r.task_id == task_id]
    pytest.fail(
        f"waiting for {task_id} timed out after {timeout} s; "
        f"stored: {stored!r}; executions: {ran}; queue: {stats!r}"
    )


async def test_server_restart_mid_run_completes_every_task(
    server: _Server, tmp_path: Path
):
    """1,000 tasks through two worker processes all succeed with correct
    results although the server is killed and restarted mid-run."""
    log = tmp_path / "executions.log"
    errors = tmp_path / "workers.err"
    ids = [f"task-{i:04d}" for i in range(TOTAL)]
    async with stem.Client.from_url(server.url, app=app) as client:
        for start in range(0, TOTAL, 100):
            await client.publish(
                [
                    client.build_envelope(
                        "e2e.work", {"n": i, "sleep": 0.05}, task_id=ids[i]
                    )
                    for i in range(start, start + 100)
                ]
            )
        workers = [
            spawn_worker(server.url, log, concurrency=10, stderr=errors)
            for _ in range(2)
        ]
        try:
            with trio.fail_after(60):
                while sum(1 for r in read_log(log) if r.kind == "E") < TOTAL * 0.3:
                    _check_alive(workers, errors)
                    await trio.sleep(0.02)
            await trio.to_thread.run_sync(server.kill)
            done_at_kill = sum(1 for r in read_log(log) if r.kind == "E")
            await trio.sleep(1.5)
            await trio.to_thread.run_sync(server.start)
            results = [
                await _wait_surviving_outages(client, task_id, 60, log)
                for task_id in ids
            ]
            _check_alive(workers, errors)
        finally:
            for proc in workers:
                stop_process(proc)
    assert done_at_kill < TOTAL, "the restart happened after the run"
    assert [r.state for r in results] == [stem.TaskState.SUCCEEDED] * TOTAL
    assert [r.value for r in results] == [i * 2 for i in range(TOTAL)]
    assert {r.task_id for r in read_log(log) if r.kind == "E"} == set(ids)
