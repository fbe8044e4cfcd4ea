"""Chaos: workflow runs (an activity, an inline step, a durable sleep, a
gather of two activities, a last activity) through three service processes
(``trio.run(stem.main)``: worker and workflow engine), a random one SIGKILLed
every 1.5-3 s and replaced, so engines die at random points of their runs.
Every run completes with the right result and each activity's effect,
applied in a side table keyed by its idempotency key (the task id), happens
exactly once per (run, step). Prints the counts.

Size: ``STEM_CHAOS_RUNS`` (default 10; one started every 0.7 s); ``STEM_CHAOS_SEED`` repeats a run.
Backends: ``STEM_CHAOS_WORKFLOW_BACKENDS`` (default ``sqlite``).
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from pathlib import Path

import pytest
import trio

import stem
from tests.chaos_app import ORDER_STEPS, app, effects_db, order_result, read_log
from tests.faults._chaos import Killer, report, rng, size, spawn_service, started_in

pytestmark = pytest.mark.slow

RUNS = size("STEM_CHAOS_RUNS", 10)
SERVICES = 3


#: Backends of this test (comma-separated). SQLite by default: a killed
#: engine's runs wait out its workflow lease (60 s), which makes a run on
#: Redis or Postgres take about two minutes; STEM_CHAOS_WORKFLOW_BACKENDS=
#: sqlite,redis,postgres runs all three (docs/reliability.md has the counts).
BACKENDS = os.environ.get("STEM_CHAOS_WORKFLOW_BACKENDS", "sqlite").split(",")


@pytest.fixture(params=[b.strip() for b in BACKENDS if b.strip()])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'wf.db'}"
    if request.param == "redis":
        request.applymarker(pytest.mark.redis)
        server = request.getfixturevalue("redis_server")
        return f"{server.url}?namespace=wf{uuid.uuid4().hex[:10]}"
    if request.param != "postgres":
        raise ValueError(f"STEM_CHAOS_WORKFLOW_BACKENDS: unknown {request.param!r}")
    request.applymarker(pytest.mark.postgres)
    url: str = request.getfixturevalue("postgres_url")
    return url


async def test_engines_killed_at_random_points_effects_once(
    backend_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """RUNS order workflows complete with their results while service
    processes are SIGKILLed at random; one effect per (run, step)."""
    log, errors = tmp_path / "executions.log", tmp_path / "services.err"
    effects = tmp_path / "effects.db"
    effects_db(effects).close()
    killer = Killer(
        procs=[
            spawn_service(backend_url, log, effects, errors) for _ in range(SERVICES)
        ],
        spawn=lambda: spawn_service(backend_url, log, effects, errors),
        random=rng(),
        working=started_in(log),
    )
    labels = [f"r{i:03d}" for i in range(RUNS)]
    runs: dict[str, object] = {}
    try:
        async with stem.Client.from_url(backend_url, app=app) as client:
            run_ids: dict[str, str] = {}
            done = trio.Event()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(killer.run, done)
                # One start every 0.7 s: engines die in every phase of a run.
                for label in labels:
                    run_ids[label] = await client.workflows.start(
                        "chaos.order", params={"run": label}
                    )
                    await trio.sleep(0.7)
                with trio.move_on_after(240 + RUNS * 5):
                    for label in labels:
                        while label not in runs:
                            try:
                                run = await client.workflows.wait(
                                    run_ids[label], timeout=5
                                )
                                runs[label] = run.result
                            except stem.WaitTimeout:
                                killer.check_alive(errors)
                done.set()
            if len(runs) < RUNS:
                first = next(label for label in labels if label not in runs)
                stuck = await client.workflows.get(run_ids[first])
                pytest.fail(
                    f"{RUNS - len(runs)} of {RUNS} runs unfinished after "
                    f"{len(killer.kills)} kills; {first}: {stuck!r}"
                )
    finally:
        killer.stop_all()
    db = effects_db(effects)
    try:
        rows = db.execute("SELECT run, step FROM effects").fetchall()
    finally:
        db.close()
    per_step = Counter((run, step) for run, step in rows)
    expected = {(label, step) for label in labels for step in ORDER_STEPS}
    executions = [r for r in read_log(log) if r.kind == "S"]
    wrong = [label for label in labels if runs[label] != order_result(label)]
    report(
        f"workflow[{request.node.callspec.id}]",
        runs=RUNS,
        activities=len(expected),
        kills=len(killer.kills),
        executions=len(executions),
        reruns_absorbed=len(executions) - len(rows),
        duplicates=sum(n - 1 for n in per_step.values() if n > 1),
        losses=len(expected - set(per_step)) + len(wrong),
    )
    assert killer.kills, "the runs ended before the first kill"
    assert wrong == []
    assert set(per_step) == expected
    assert all(n == 1 for n in per_step.values()), per_step
