"""``trio.run(stem.main)`` as a real service process on SQLite: it runs tasks
from ``STEM_APP`` and stops on SIGTERM without losing any."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

import stem
from tests.e2e_app import (
    APP_SPEC,
    LOG_ENV,
    ROOT,
    app,
    ended_by,
    read_log,
    run_counts,
    started_by,
)

pytestmark = pytest.mark.slow

TOTAL = 20
CONCURRENCY = 4


def _service(url: str, log: Path, stderr: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "STEM_APP": APP_SPEC,
        "STEM_BROKER_URL": url,
        "STEM_CONCURRENCY": str(CONCURRENCY),
        "STEM_GRACE_PERIOD": "20",
        LOG_ENV: str(log),
    }
    with open(stderr, "ab") as err:
        return subprocess.Popen(
            [sys.executable, "-c", "import trio, stem; trio.run(stem.main)"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


async def test_sigterm_finishes_running_tasks_and_keeps_the_rest(tmp_path: Path):
    """On SIGTERM the service lets its running tasks finish, exits 0 and
    leaves every unstarted task queued; a second service runs those, and
    every task ran exactly once."""
    url = f"sqlite:///{tmp_path / 'stem.db'}?poll_interval=0.02"
    log = tmp_path / "executions.log"
    errors = tmp_path / "service.err"
    ids = [f"slow-{i:02d}" for i in range(TOTAL)]
    async with stem.Client.from_url(url, app=app) as client:
        for i, task_id in enumerate(ids):
            await client.enqueue("e2e.work", {"n": i, "sleep": 1.0}, task_id=task_id)
        first = _service(url, log, errors)
        try:
            with trio.fail_after(30):
                while len(started_by(read_log(log), first.pid)) < CONCURRENCY:
                    assert first.poll() is None, errors.read_text()
                    await trio.sleep(0.02)
            first.send_signal(signal.SIGTERM)
            code = await trio.to_thread.run_sync(first.wait, 30)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
        assert code == 0, errors.read_text()
        records = read_log(log)
        ran = started_by(records, first.pid)
        assert ran, "the service ran nothing before the signal"
        assert ended_by(records, first.pid) == ran  # running ones finished
        for task_id in ids:
            result = await client.get(task_id)
            assert result is not None
            expected = (
                stem.TaskState.SUCCEEDED if task_id in ran else stem.TaskState.QUEUED
            )
            assert result.state == expected, (task_id, result)
        stats = await client.queue_stats()
        assert (stats.pending, stats.in_flight) == (TOTAL - len(ran), 0)

        second = _service(url, log, errors)
        try:
            with trio.fail_after(60):
                results = [await client.wait_for(t, timeout=60) for t in ids]
        finally:
            second.send_signal(signal.SIGTERM)
            assert await trio.to_thread.run_sync(second.wait, 30) == 0
    assert [r.value for r in results] == [i * 2 for i in range(TOTAL)]
    assert run_counts(read_log(log)) == dict.fromkeys(ids, 1)
    text = errors.read_text()
    assert "Traceback" not in text, text
