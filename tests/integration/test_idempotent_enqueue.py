"""Enqueue by task id is idempotent on every backend: a second enqueue of a
live or recently finished id queues nothing, racing producers on separate
connections (and processes) queue one message, and a terminal result is
never overwritten by a second run."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import trio

import stem
from stem._envelope import Envelope
from stem._states import TaskState
from tests.cli_process import ROOT, run_stem

RUNS: list[tuple[str, int]] = []


@stem.task("idem.record")
async def record(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
    """Record the run as it returns (the order outcomes reach the broker)."""
    await trio.sleep(float(args.get("sleep", 0)))
    RUNS.append((ctx.task_id, args["n"]))
    return int(args["n"])


_SERVER_URLS = {
    "redis": "redis_url",
    "redis_cluster": "redis_cluster_url",
    "postgres": "postgres_url",
}


def _server_url(request: pytest.FixtureRequest, kind: str) -> str:
    value: str = request.getfixturevalue(_SERVER_URLS[kind])
    if kind == "redis_cluster":  # a fresh namespace on the session's cluster
        value += f"?namespace=i{uuid.uuid4().hex[:10]}"
    return value


@pytest.fixture(params=["memory", "sqlite", "redis", "redis_cluster", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    kind = request.param
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/idem.db?poll_interval=0.02"
    return _server_url(request, kind)


async def test_a_known_task_id_queues_nothing(url: str) -> None:
    """A second enqueue of a queued id, then of a finished one (within its
    result TTL), returns the id and queues nothing: the task runs once and
    keeps its first result."""
    RUNS.clear()
    async with stem.Client.from_url(url, tasks=[record]) as client:
        first = await client.enqueue("idem.record", {"n": 1}, task_id="fixed-1")
        second = await client.enqueue("idem.record", {"n": 2}, task_id="fixed-1")
        assert (first, second) == ("fixed-1", "fixed-1")
        assert (await client.queue_stats()).pending == 1
        async with client.worker(concurrency=2, claim_wait=0.05):
            result = await client.wait_for("fixed-1", timeout=20)
            third = await client.enqueue("idem.record", {"n": 3}, task_id="fixed-1")
            await trio.sleep(0.3)
        again = await client.get("fixed-1")
        stats = await client.queue_stats()
    assert third == "fixed-1"
    assert RUNS == [("fixed-1", 1)]
    assert result.value == 1
    assert again is not None
    assert again.value == 1
    assert (stats.pending, stats.in_flight) == (0, 0)


async def test_a_unique_key_with_a_known_id_is_released_once_finished(
    url: str,
) -> None:
    """An enqueue that names a finished task's id and its unique key queues
    nothing and leaves the key free for the next task."""
    RUNS.clear()
    async with stem.Client.from_url(url, tasks=[record]) as client:
        async with client.worker(concurrency=1, claim_wait=0.05):
            await client.enqueue("idem.record", {"n": 1}, task_id="u-1", unique_key="k")
            await client.wait_for("u-1", timeout=20)
            await client.flush()
            same = await client.enqueue(
                "idem.record", {"n": 2}, task_id="u-1", unique_key="k"
            )
            fresh = await client.enqueue("idem.record", {"n": 3}, unique_key="k")
            await client.wait_for(fresh, timeout=20)
    assert same == "u-1"
    assert fresh != "u-1"
    assert [n for _, n in RUNS] == [1, 3]


@pytest.mark.parametrize("kind", ["sqlite", "redis", "redis_cluster", "postgres"])
async def test_producers_racing_on_separate_connections_queue_once(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Eight clients (each with its own connections) enqueueing the same 25
    ids at once queue exactly one message per id."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path}/race.db"
    else:
        url = _server_url(request, kind)
    ids = [f"race-{i}" for i in range(25)]
    returned: list[str] = []

    async def producer(n: int) -> None:
        async with stem.Client.from_url(url) as client:
            for task_id in ids:
                returned.append(
                    await client.enqueue("idem.record", {"n": n}, task_id=task_id)
                )

    async with trio.open_nursery() as nursery:
        for n in range(8):
            nursery.start_soon(producer, n)
    async with stem.Client.from_url(url) as client:
        stats = await client.queue_stats()
        claimed = await client.backend.broker.claim(
            ["default"], limit=1000, lease=30, consumer="t"
        )
    assert sorted(set(returned)) == sorted(ids)
    assert stats.pending == 25
    assert sorted(d.task_id for d in claimed) == sorted(ids)


@pytest.mark.slow
def test_producer_processes_racing_on_sqlite_queue_once(tmp_path: Path) -> None:
    """Four producer processes enqueueing the same 40 ids on one SQLite file
    queue exactly one message per id."""
    url = f"sqlite:///{tmp_path}/procs.db"
    code = (
        "import sys, trio, stem\n"
        "async def main():\n"
        "    async with stem.Client.from_url(sys.argv[1]) as c:\n"
        "        for i in range(40):\n"
        "            await c.enqueue('idem.record', {'n': 0}, task_id=f'p-{i}')\n"
        "trio.run(main)\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, url], cwd=ROOT) for _ in range(4)
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]

    async def count() -> list[str]:
        async with stem.Client.from_url(url) as client:
            got = await client.backend.broker.claim(
                ["default"], limit=1000, lease=30, consumer="t"
            )
            return [d.task_id for d in got]

    assert sorted(trio.run(count)) == sorted(f"p-{i}" for i in range(40))


async def test_a_second_copy_never_overwrites_a_terminal_result(url: str) -> None:
    """Two copies of one task id published straight to the broker (a duplicate
    publish, a redelivery) both run, and the result stays the first one's,
    whether they finish in one BrokerActor batch or in two."""
    RUNS.clear()
    async with stem.Client.from_url(url, tasks=[record]) as client:
        at = stem.now()
        copies = [
            Envelope(id=f"dup-{case}", name="idem.record", args=args, enqueued_at=at)
            for case, pairs in (
                ("same", ({"n": 1}, {"n": 2})),
                ("apart", ({"n": 3, "sleep": 0.5}, {"n": 4, "sleep": 1.0})),
            )  # fmt: skip
            for args in pairs
        ]
        await client.backend.broker.publish(copies)
        async with client.worker(concurrency=4, claim_wait=0.05):
            same = await client.wait_for("dup-same", timeout=20)
            apart = await client.wait_for("dup-apart", timeout=20)
            with trio.fail_after(20):
                while len(RUNS) < 4:
                    await trio.sleep(0.05)
            await trio.sleep(0.2)
            await client.flush()
        final_same = await client.get("dup-same")
        final_apart = await client.get("dup-apart")
        dead = await client.dead_letters().count()
    first_same = next(n for task_id, n in RUNS if task_id == "dup-same")
    assert same.state is TaskState.SUCCEEDED
    assert final_same is not None
    assert final_same.value == same.value == first_same
    assert final_apart is not None
    assert final_apart.value == apart.value == 3
    assert dead == 0


def test_stem_enqueue_with_a_task_id_twice_queues_once(tmp_path: Path) -> None:
    """`stem enqueue --task-id` twice prints the id both times and queues one task."""
    url = f"sqlite:///{tmp_path}/cli.db"
    args = ["enqueue", "idem.record", "--task-id", "invoice-42", "--url", url]
    first, second = run_stem(*args, "--args", '{"n": 1}'), run_stem(*args)
    assert (first.returncode, second.returncode) == (0, 0), second.stderr
    assert first.stdout.strip() == second.stdout.strip() == "invoice-42"
    queues = run_stem("queues", "--url", url, "--json")
    assert '"pending": 1' in queues.stdout
