"""How fast the dashboard's pages answer with 100,000 tasks stored.

For each backend, a fresh store gets --tasks task records (succeeded,
failed, revoked, queued and running, spread over the last two hours, over
8 queues and 20 task names) written in batches through the result backend,
then the dashboard is served in this process (Hypercorn on Trio, port 0)
and each page is fetched over HTTP with an admin token: the overview (chart
of the last hour, queue depths, workers), the first tasks page, a state
filter, a queue filter (a bounded scan), the second page (a cursor) and a
task's own page. Pages are fetched in rounds, interleaved; the figures are
the medians of --runs rounds, in milliseconds, with the load average. The
target is under 200 ms for the overview and tasks pages.

Usage: .venv/bin/python benchmarks/dashboard.py [--backend sqlite]
       [--backend postgres] [--tasks 100000] [--runs 5]
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import stem  # noqa: E402
from benchmarks._harness import fresh_url, load, median  # noqa: E402
from stem.dashboard import DashboardAuth, serve  # noqa: E402

TOKEN = "bench-token-0123456789abcdef"
STATES = (
    [stem.TaskState.SUCCEEDED] * 14
    + [stem.TaskState.FAILED] * 3
    + [stem.TaskState.REVOKED, stem.TaskState.QUEUED, stem.TaskState.RUNNING]
)


async def seed(url: str, total: int) -> str:
    """Write ``total`` records; returns one task id."""
    rng = random.Random(20)
    at = stem.now()
    async with stem.Client.from_url(url) as client:
        results = client.backend.results
        batch: list[stem.TaskResult] = []
        last = ""
        for n in range(total):
            last = f"bench-{n:07d}"
            batch.append(
                stem.TaskResult(
                    task_id=last,
                    state=rng.choice(STATES),
                    name=f"bench.task{n % 20}",
                    queue=f"q{n % 8}",
                    attempt=1,
                    value={"n": n},
                    updated_at=at - 7200 + 7200 * n / total,
                    meta={"args": {"n": n}},
                )
            )
            if len(batch) == 2000:
                await results.set_state(batch)
                batch = []
        if batch:
            await results.set_state(batch)
    return last


async def measure(url: str, total: int, runs: int) -> dict[str, list[float]]:
    began = time.perf_counter()
    task_id = await seed(url, total)
    print(f"  seeded {total:,} records in {time.perf_counter() - began:.1f} s")
    auth = DashboardAuth(admin_tokens=(TOKEN,))
    samples: dict[str, list[float]] = {}
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(
            lambda task_status: serve(url, auth, port=0, task_status=task_status)
        )
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(
            base_url=bound[0], headers=headers, timeout=60
        ) as http:
            first = (await http.get("/tasks")).text
            cursor = re.search(r'id="older" href="/tasks\?([^"]+)"', first)
            pages = {
                "overview /": "/",
                "tasks /tasks": "/tasks",
                "tasks ?state=failed": "/tasks?state=failed",
                "tasks ?queue=q3": "/tasks?queue=q3",
                "tasks page 2": "/tasks?" + (cursor.group(1) if cursor else ""),
                "task /tasks/ID": f"/tasks/{task_id}",
            }
            for path in pages.values():  # warm up
                assert (await http.get(path)).status_code == 200, path
            for _ in range(runs):
                for label, path in pages.items():
                    start = time.perf_counter()
                    answer = await http.get(path)
                    took = (time.perf_counter() - start) * 1000
                    assert answer.status_code == 200, (path, answer.text[:200])
                    samples.setdefault(label, []).append(took)
        nursery.cancel_scope.cancel()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgres"])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    ns = parser.parse_args()
    print(
        f"dashboard pages with {ns.tasks:,} task records stored; median of "
        f"{ns.runs} rounds (pages interleaved), ms; load average {load()}"
    )
    for backend in ns.backend or ["sqlite", "postgres"]:
        print(f"{backend}:")
        with fresh_url(backend) as url:
            samples: dict[str, Any] = trio.run(measure, url, ns.tasks, ns.runs)
        for label, values in samples.items():
            runs = ", ".join(f"{v:.0f}" for v in values)
            verdict = "ok" if median(values) < 200 else "OVER 200 ms"
            print(f"  {label:22} {median(values):7.1f} ms  {verdict}  ({runs})")
    print(f"load average after: {load()}")


if __name__ == "__main__":
    main()
