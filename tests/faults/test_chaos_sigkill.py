"""Chaos: a run of tasks with planned retries, published in 15 waves 0.7 s
apart, while random worker processes get SIGKILL every 1.5-3 s (each replaced at once), on SQLite, Redis and
Postgres. Every task reaches one terminal state, SUCCEEDED with the right
value; nothing is dead-lettered or left queued; an attempt runs again only
when the process running it was killed. Prints the counts.

The memory backend lives inside one process, so it has no worker process to
kill: its crash behaviour is the in-process tests' (tests/unit, contract).

Size: ``STEM_CHAOS_TASKS`` (default 150, CI-sized; the documented full run
is 5000), ``STEM_CHAOS_SEED`` repeats a run's random choices.
"""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path

import pytest
import trio

import stem
from tests.chaos_app import Execution, app, read_log
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

pytestmark = pytest.mark.slow

TASKS = size("STEM_CHAOS_TASKS", 150)
WORKERS = 3


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store on each backend, shared by separate processes."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'stem.db'}"
    if request.param == "redis":
        request.applymarker(pytest.mark.redis)
        server = request.getfixturevalue("redis_server")
        return f"{server.url}?namespace=chaos{uuid.uuid4().hex[:10]}"
    request.applymarker(pytest.mark.postgres)
    url: str = request.getfixturevalue("postgres_url")
    return url


async def wait_all(
    client: stem.Client,
    ids: list[str],
    killer: Killer,
    errors: Path,
    results: dict[str, stem.TaskResult],
) -> None:
    """Fill ``results`` with every task's terminal result (polling the
    unfinished ones in chunks: one wait_for per task would be thousands of
    round trips)."""
    while len(results) < len(ids):
        left = [t for t in ids if t not in results]
        for start in range(0, len(left), 500):
            chunk = left[start : start + 500]
            found = await client.backend.results.get_many(chunk)
            for task_id, result in zip(chunk, found, strict=True):
                if result is not None and result.is_terminal:
                    results[task_id] = result
        if len(results) < len(ids):
            killer.check_alive(errors)
            await trio.sleep(0.5)


def lease_losses(errors: Path) -> set[str]:
    """Task ids whose live worker reported losing the lease (it stalled past
    the visibility timeout, so the task may run again elsewhere)."""
    found = set()
    for line in errors.read_text().splitlines():
        if "lost the lease of '" in line:
            found.add(line.split("lost the lease of '", 1)[1].split("'", 1)[0])
    return found


def rerun_attempts(records: list[Execution]) -> Counter[tuple[str, int]]:
    """(task id, attempt) pairs started more than once, with their count."""
    starts = Counter((r.task_id, r.attempt) for r in records if r.kind == "S")
    return Counter({key: n for key, n in starts.items() if n > 1})


async def test_random_worker_sigkills_lose_and_double_nothing(
    backend_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Tasks with retries through three worker processes, one SIGKILLed
    every few seconds and replaced: each ends SUCCEEDED once with n * 3 after
    its planned failures; only attempts in flight on a killed worker ran
    twice."""
    log, errors = tmp_path / "executions.log", tmp_path / "workers.err"
    ids = [f"chaos-{i:05d}" for i in range(TASKS)]
    killer = Killer(
        procs=[spawn_worker(backend_url, log, errors) for _ in range(WORKERS)],
        spawn=lambda: spawn_worker(backend_url, log, errors),
        random=rng(),
        working=started_in(log),
    )
    try:
        async with stem.Client.from_url(backend_url, app=app) as client:
            done = trio.Event()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(killer.run, done)
                # 15 waves 0.7 s apart: at least 10 s of arrivals under kills.
                await publish_all(
                    client, ids, sleep=0.1, batch=-(-TASKS // 15), every=0.7
                )
                results: dict[str, stem.TaskResult] = {}
                with trio.move_on_after(240 + TASKS * 0.1):
                    await wait_all(client, ids, killer, errors, results)
                done.set()
            if len(results) < TASKS:
                missing = [t for t in ids if t not in results]
                stored = await client.get(missing[0])
                stats = await client.queue_stats("default")
                ran = [r for r in read_log(log) if r.task_id == missing[0]]
                pytest.fail(
                    f"{len(missing)} of {TASKS} tasks unfinished after "
                    f"{len(killer.kills)} kills; first {missing[0]}: stored "
                    f"{stored!r}, executions {ran}, kills {killer.kills}, "
                    f"queue {stats!r}"
                )
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
    reruns = rerun_attempts(records)
    ended = Counter(r.task_id for r in records if r.kind == "E")
    report(
        f"sigkill[{request.node.callspec.id}]",
        tasks=TASKS,
        kills=len(killer.kills),
        retries=sum(planned_failures(i) for i in range(TASKS)),
        duplicates=sum(n - 1 for n in reruns.values()),
        duplicate_successes=sum(n - 1 for n in ended.values() if n > 1),
        losses=TASKS - len(results) + len(wrong),
        dead=len(dead),
        lease_losses=len(lease_losses(errors)),
    )
    assert killer.kills, "the run ended before the first kill"
    assert wrong == []
    assert [r.attempt for r in (results[t] for t in ids)] == [
        planned_failures(i) + 1 for i in range(TASKS)
    ]
    assert dead == []
    assert (stats.pending, stats.delayed, stats.in_flight) == (0, 0, 0)
    assert set(ended) == set(ids)
    # An attempt ran again only because the process running it was killed:
    # every start but the last of a repeated attempt was on a killed pid.
    # (Or because its live worker stalled past the lease and said so: an
    # overloaded machine can starve a process for seconds.)
    stalled = lease_losses(errors)
    for (task_id, attempt), _ in reruns.items():
        pids = [
            r.pid
            for r in records
            if r.kind == "S" and r.task_id == task_id and r.attempt == attempt
        ]
        assert set(pids[:-1]) <= killer.killed or task_id in stalled, (
            task_id,
            attempt,
            pids,
        )
    assert "Traceback" not in errors.read_text(), errors.read_text()[-3000:]
