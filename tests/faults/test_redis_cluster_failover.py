"""A Redis Cluster master SIGKILLed mid-run: its replica takes over and
every task still reaches one terminal state with its right value, through
real ``stem worker`` processes (tests/e2e_app.py records executions). The
cluster is this test's own (3 masters, 3 replicas, ``cluster-node-timeout``
1 s), since it loses a node."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from redis.crc import key_slot

import stem
from stem.adapters.redis._conn import Keys
from tests._cluster import ClusterUnavailable, RedisClusterServers
from tests._servers import missing
from tests.e2e_app import app, read_log, run_counts, spawn_worker, stop_process

pytestmark = [pytest.mark.slow, pytest.mark.redis]

TOTAL = 600
CONCURRENCY = 10


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[RedisClusterServers]:
    try:
        cluster = RedisClusterServers(tmp_path / "cluster")
    except ClusterUnavailable as exc:
        missing(str(exc))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def _check_alive(workers: list[subprocess.Popen[bytes]], errors: Path) -> None:
    for proc in workers:
        if proc.poll() is not None:
            pytest.fail(
                f"worker {proc.pid} exited with {proc.returncode}:\n"
                f"{errors.read_text()[-3000:]}"
            )


async def test_master_failover_mid_run(
    own_cluster: RedisClusterServers, tmp_path: Path
) -> None:
    """600 tasks through two workers; the master serving the queue's slot is
    SIGKILLed when a fifth are done; its replica is promoted, and every task
    succeeds with its value (run again at most where a lease lapsed)."""
    namespace = f"f{uuid.uuid4().hex[:10]}"
    # Commands wait out the failover (about 2-3 s here) instead of failing.
    url = f"{own_cluster.url}?namespace={namespace}&retry_for=20"
    log = tmp_path / "executions.log"
    errors = tmp_path / "workers.err"
    ids = [f"task-{i:04d}" for i in range(TOTAL)]
    slot = key_slot(Keys(namespace).queue("default")[0].encode())
    victim = own_cluster.master_of(slot)
    workers = [
        spawn_worker(url, log, concurrency=CONCURRENCY, stderr=errors) for _ in range(2)
    ]
    try:
        async with stem.Client.from_url(url, app=app) as client:
            for start in range(0, TOTAL, 100):
                await client.publish(
                    [
                        client.build_envelope(
                            "e2e.work", {"n": i, "sleep": 0.01}, task_id=ids[i]
                        )
                        for i in range(start, start + 100)
                    ]
                )
            with trio.fail_after(60):
                while sum(1 for r in read_log(log) if r.kind == "E") < TOTAL // 5:
                    _check_alive(workers, errors)
                    await trio.sleep(0.02)
            own_cluster.kill(victim)
            ended_at_kill = sum(1 for r in read_log(log) if r.kind == "E")
            with trio.fail_after(120):
                results = [await client.wait_for(t, timeout=110) for t in ids]
        _check_alive(workers, errors)
    finally:
        for proc in workers:
            stop_process(proc)
    assert ended_at_kill < TOTAL, "the kill came after the run"
    assert [r.state for r in results] == [stem.TaskState.SUCCEEDED] * TOTAL
    assert [r.value for r in results] == [i * 2 for i in range(TOTAL)]
    # The replica took over: the killed master's slots are served again.
    assert own_cluster.master_of(slot) != victim
    counts = run_counts(read_log(log))
    assert set(counts) == set(ids)
    print(
        f"failover: {ended_at_kill} of {TOTAL} done at the kill; "
        f"{sum(1 for n in counts.values() if n > 1)} tasks ran more than once"
    )
