"""Chaos: the server behind two worker processes is killed and restarted
several times mid-run, and stalled in between (Redis ``CLIENT PAUSE``,
Postgres ``pg_terminate_backend`` of every client connection). Every task
still reaches one terminal state, SUCCEEDED with the right value, nothing is
dead-lettered or left queued, and the workers ride it out. Prints the counts.

Size: ``STEM_CHAOS_TASKS`` (default 200), ``STEM_CHAOS_RESTARTS`` (default
3) and ``STEM_CHAOS_STALLS`` (default 2); ``STEM_CHAOS_SEED`` repeats the
random pauses.
"""

from __future__ import annotations

import socket
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest
import trio

import stem
from tests._servers import free_port, missing
from tests.chaos_app import app, read_log
from tests.faults._chaos import (
    Killer,
    planned_failures,
    publish_all,
    report,
    rng,
    size,
    spawn_worker,
    started_in,
)
from tests.fixtures_postgres import PostgresCluster, _bindir, fresh_schema_url
from tests.fixtures_redis import RedisServer

pytestmark = pytest.mark.slow

TASKS = size("STEM_CHAOS_TASKS", 200)
RESTARTS = size("STEM_CHAOS_RESTARTS", 3)
STALLS = size("STEM_CHAOS_STALLS", 2)


@attrs.define
class Target:
    """A private server the test may crash, start again and stall."""

    name: str
    url: str
    kill: Callable[[], None]
    start: Callable[[], None]
    stall: Callable[[], None]


class DurableCluster(PostgresCluster):
    """``synchronous_commit=on``: the shared fixture turns it off, and then a
    crash may drop transactions the server already confirmed, which no
    client can defend against."""

    def _options(self) -> str:
        return f"{super()._options()} -c synchronous_commit=on"


def _redis_pause(port: int, ms: int = 1500) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"CLIENT PAUSE {ms} ALL\r\n".encode())
        assert sock.recv(64).startswith(b"+OK")


@pytest.fixture(params=["redis", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param == "redis":
        request.applymarker(pytest.mark.redis)
        redis = RedisServer(tmp_path / "redis", appendonly=True)
        redis.directory.mkdir()
        redis.start()
        try:
            yield Target(
                "redis",
                f"{redis.url}?namespace=chaos",
                redis.kill,
                redis.start,
                lambda: _redis_pause(redis.port),
            )
        finally:
            redis.stop()
        return
    request.applymarker(pytest.mark.postgres)
    bindir = _bindir()
    if bindir is None:
        missing("PostgreSQL binaries (initdb, pg_ctl) not found")
    base = Path(tempfile.mkdtemp(prefix="stem-pg-"))
    cluster = DurableCluster(bindir=bindir, datadir=base / "data", port=free_port())
    try:
        cluster.init()
        cluster.start()
        yield Target(
            "postgres",
            fresh_schema_url(cluster.url),
            lambda: cluster.stop("immediate"),  # a crash: recovery from WAL
            cluster.start,
            lambda: cluster.psql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
            ),
        )
    finally:
        cluster.destroy()


async def wait_through_outages(
    client: stem.Client, task_id: str, killer: Killer, errors: Path
) -> stem.TaskResult:
    while True:
        try:
            return await client.wait_for(task_id, timeout=5)
        except (stem.WaitTimeout, stem.BrokerUnavailable):
            killer.check_alive(errors)
            await trio.sleep(0.1)


async def test_server_restarts_and_stalls_lose_nothing(
    target: Target, tmp_path: Path
) -> None:
    """Tasks with retries through two worker processes while the server is
    crashed and restarted RESTARTS times and stalled STALLS times: every
    task ends SUCCEEDED once with n * 3, no worker dies, nothing is left."""
    log, errors = tmp_path / "executions.log", tmp_path / "workers.err"
    ids = [f"chaos-{i:05d}" for i in range(TASKS)]
    chooser = rng()
    working = started_in(log)
    # No random kills here: the killer only holds the processes and checks
    # that none died by itself.
    killer = Killer(
        procs=[spawn_worker(target.url, log, errors) for _ in range(2)],
        spawn=lambda: spawn_worker(target.url, log, errors),
        random=chooser,
    )
    actions = ["restart"] * RESTARTS + ["stall"] * STALLS
    chooser.shuffle(actions)
    done: list[str] = []
    results: dict[str, stem.TaskResult] = {}
    try:
        async with stem.Client.from_url(target.url, app=app) as client:
            await publish_all(client, ids, sleep=0.5)
            with trio.fail_after(240 + TASKS * 0.1):
                while not any(working(p.pid) for p in killer.procs):
                    killer.check_alive(errors)
                    await trio.sleep(0.1)
                for action in actions:
                    await trio.sleep(chooser.uniform(0.5, 2.0))
                    if action == "restart":
                        await trio.to_thread.run_sync(target.kill)
                        await trio.sleep(chooser.uniform(0.3, 1.5))
                        await trio.to_thread.run_sync(target.start)
                    else:
                        await trio.to_thread.run_sync(target.stall)
                    done.append(action)
                finished_during = len(
                    {r.task_id for r in read_log(log) if r.kind == "E"}
                )
                for task_id in ids:
                    results[task_id] = await wait_through_outages(
                        client, task_id, killer, errors
                    )
            killer.check_alive(errors)
            dead = await client.dead_letters("default").list()
            stats = await client.queue_stats("default")
    finally:
        killer.stop_all()
    records = read_log(log)
    wrong = [
        t
        for i, t in enumerate(ids)
        if results[t].state != stem.TaskState.SUCCEEDED or results[t].value != i * 3
    ]
    starts = Counter((r.task_id, r.attempt) for r in records if r.kind == "S")
    ended = Counter(r.task_id for r in records if r.kind == "E")
    report(
        f"servers[{target.name}]",
        tasks=TASKS,
        kills=0,
        restarts=done.count("restart"),
        stalls=done.count("stall"),
        finished_during_chaos=finished_during,
        retries=sum(planned_failures(i) for i in range(TASKS)),
        duplicates=sum(n - 1 for n in starts.values() if n > 1),
        duplicate_successes=sum(n - 1 for n in ended.values() if n > 1),
        losses=TASKS - len(results) + len(wrong),
        dead=len(dead),
    )
    assert finished_during < TASKS, "the chaos happened after the run"
    assert wrong == []
    assert dead == []
    assert (stats.pending, stats.delayed, stats.in_flight) == (0, 0, 0)
    assert set(ended) == set(ids)
