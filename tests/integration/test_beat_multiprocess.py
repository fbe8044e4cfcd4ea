"""Three beat processes (real processes, real time) share one backend and one
``every=1.0`` entry for 6 s: each tick fires once overall, about 6 fires in
total, not about 18."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

import stem

ROOT = Path(__file__).resolve().parents[2]

#: One beat node: runs beat for ``seconds`` and prints one JSON line per fire
#: it dispatched.
BEAT_NODE = r"""
import json, sys, trio, stem

url, seconds = sys.argv[1], float(sys.argv[2])
entry = stem.ScheduleEntry("every-second", every=1.0, task=stem.signature("tick"))
app = stem.App(schedules=[entry])
fired = []
app.signals.connect("schedule_dispatched", lambda ev: fired.append(ev))

async def main():
    async with stem.Client.from_url(url, app=app) as client:
        async with client.beat(lease_ttl=2.0) as beat:
            await trio.sleep(seconds)
            stats = await beat.statistics()
    for ev in fired:
        print(json.dumps({"tick": ev.fire_time, "task_id": ev.task_id}))
    print(json.dumps({"stats": {"fired": stats.fired, "leaderships": stats.leaderships}}))

trio.run(main)
"""

RUN_SECONDS = 6.0


def _run_nodes(url: str, n: int = 3) -> list[list[dict[str, Any]]]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", BEAT_NODE, url, str(RUN_SECONDS)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        outputs.append([json.loads(line) for line in out.splitlines() if line])
    return outputs


async def _check(url: str) -> None:
    outputs = await trio.to_thread.run_sync(_run_nodes, url)
    ticks = [rec["tick"] for out in outputs for rec in out if "tick" in rec]
    task_ids = [rec["task_id"] for out in outputs for rec in out if "tick" in rec]
    assert 4 <= len(ticks) <= 8, ticks
    assert len(set(ticks)) == len(ticks)
    assert len(set(task_ids)) == len(task_ids)
    steps = sorted(b - a for a, b in zip(sorted(ticks), sorted(ticks)[1:]))
    assert steps == [pytest.approx(1.0)] * len(steps)
    async with stem.Client.from_url(url) as client:
        record = await client.backend.schedules.get("every-second")
        queued = await client.queue_stats("default")
    assert record is not None
    assert record.fire_count == len(ticks)
    assert queued.pending == len(ticks)


@pytest.mark.slow
async def test_three_sqlite_processes_fire_each_tick_once(tmp_path: Path) -> None:
    """Three processes running beat on one SQLite file for 6 s fire 4 to 8 times
    in total, each tick once."""
    await _check(f"sqlite:///{tmp_path / 'beat.db'}")


@pytest.mark.slow
@pytest.mark.redis
async def test_three_redis_processes_fire_each_tick_once(redis_url: str) -> None:
    """Three processes running beat on one Redis namespace fire each tick once."""
    await _check(f"{redis_url}?namespace=beat{stem._ids.new_id()[-8:]}")


@pytest.mark.slow
@pytest.mark.redis
async def test_three_redis_cluster_processes_fire_each_tick_once(
    redis_cluster_url: str,
) -> None:
    """Three processes running beat on one Redis Cluster namespace fire each
    tick once."""
    await _check(f"{redis_cluster_url}?namespace=beat{stem._ids.new_id()[-8:]}")


@pytest.mark.slow
@pytest.mark.postgres
async def test_three_postgres_processes_fire_each_tick_once(postgres_url: str) -> None:
    """Three processes running beat on one Postgres schema fire each tick once."""
    await _check(postgres_url)  # a fresh schema
