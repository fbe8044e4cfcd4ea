"""Several processes on one SQLite file: claims are exclusive, a SIGKILLed
consumer's messages come back after their lease."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from stem import Envelope
from stem.adapters.sqlite import open_backend

ROOT = Path(__file__).resolve().parents[2]

#: A producer/consumer process: publishes its own tasks, then claims and acks
#: from the shared queue until it sees "stop"; prints one JSON line per claim.
PRODUCE_CONSUME = r"""
import json, sys, trio
from stem.adapters.sqlite import open_backend
from stem import Envelope

url, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])

async def main():
    async with open_backend(url) as backend:
        broker = backend.broker
        envs = [
            Envelope(id=f"{name}-{i}", name="t", queue="shared") for i in range(count)
        ]
        for i in range(0, count, 25):
            await broker.publish(envs[i : i + 25])
        await broker.publish([Envelope(id=f"stop-{name}", name="stop", queue="ctl")])
        idle = 0
        while idle < 20:
            got = await broker.claim(
                ["shared"], limit=7, lease=60, consumer=name, wait=0.05
            )
            if not got:
                idle += 1
                continue
            idle = 0
            for d in got:
                rec = {"id": d.task_id, "receipt": d.receipt, "n": d.delivery_count}
                print(json.dumps(rec))
            await broker.ack(got)
        sys.stdout.flush()

trio.run(main)
"""

#: Claims up to N messages with a short lease, reports them, then hangs.
CLAIM_AND_HANG = r"""
import json, sys, trio
from stem.adapters.sqlite import open_backend

url, limit = sys.argv[1], int(sys.argv[2])

async def main():
    async with open_backend(url) as backend:
        got = await backend.broker.claim(
            ["q"], limit=limit, lease=1.5, consumer="doomed", wait=10
        )
        print(json.dumps([d.task_id for d in got]), flush=True)
        await trio.sleep_forever()

trio.run(main)
"""


def _spawn(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
async def test_two_processes_never_share_a_live_delivery(tmp_path):
    """Two processes producing and consuming 400 tasks each on one file
    together receive every task exactly once."""
    url = f"sqlite:///{tmp_path / 'shared.db'}?poll_interval=0.02"
    procs = [_spawn(PRODUCE_CONSUME, url, name, "400") for name in ("a", "b")]
    outputs = []
    for proc in procs:
        out, err = await trio.to_thread.run_sync(proc.communicate, None, 60)
        assert proc.returncode == 0, err
        outputs.append([json.loads(line) for line in out.splitlines()])
    ids = [rec["id"] for out in outputs for rec in out]
    assert len(ids) == len(set(ids)), "a task was delivered twice"
    assert set(ids) == {f"{n}-{i}" for n in "ab" for i in range(400)}
    assert all(rec["n"] == 1 for out in outputs for rec in out)
    # both processes did claim work (the test exercised contention)
    assert all(out for out in outputs)
    async with open_backend(url) as backend:
        stats = await backend.broker.stats("shared")
        assert (stats.pending, stats.in_flight) == (0, 0)


@pytest.mark.slow
async def test_sigkilled_consumer_messages_come_back(tmp_path):
    """Messages leased by a process killed with SIGKILL are claimable again
    once their lease has passed (and not before)."""
    url = f"sqlite:///{tmp_path / 'kill.db'}?poll_interval=0.02"
    async with open_backend(url) as backend:
        broker = backend.broker
        await broker.publish(
            [Envelope(id=f"k{i}", name="t", queue="q") for i in range(10)]
        )
        proc = _spawn(CLAIM_AND_HANG, url, "6")
        try:
            line = await trio.to_thread.run_sync(proc.stdout.readline)
            taken = json.loads(line)
            assert len(taken) == 6
            proc.send_signal(signal.SIGKILL)
            await trio.to_thread.run_sync(proc.wait, 10)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        rest = await broker.claim(["q"], limit=10, lease=60, consumer="survivor")
        assert sorted(d.task_id for d in rest) == sorted(
            f"k{i}" for i in range(10) if f"k{i}" not in taken
        )
        with trio.fail_after(10):
            back = await broker.claim(["q"], limit=10, lease=60, consumer="s", wait=8)
        assert sorted(d.task_id for d in back) == sorted(taken)
        assert all(d.delivery_count == 2 for d in back)
        await broker.ack([*rest, *back])
        assert (await broker.stats("q")).in_flight == 0


OPEN_ONLY = r"""
import sys, trio
from stem.adapters.sqlite import open_backend

async def main():
    async with open_backend(sys.argv[1]) as backend:
        await backend.broker.stats("default")

trio.run(main)
"""


@pytest.mark.slow
async def test_processes_opening_a_new_file_at_once(tmp_path):
    """Six processes creating and migrating one new file at the same moment
    all succeed and leave one schema."""
    url = f"sqlite:///{tmp_path / 'race.db'}"
    procs = [_spawn(OPEN_ONLY, url) for _ in range(6)]
    for proc in procs:
        _, err = await trio.to_thread.run_sync(proc.communicate, None, 60)
        assert proc.returncode == 0, err
    async with open_backend(url) as backend:
        assert await backend.broker.queues() == []
