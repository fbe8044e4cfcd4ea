"""Workflow runs end to end: how fast an engine drives runs of inline steps,
and runs that gather activities.

Run: .venv/bin/python benchmarks/workflows.py [--url URL ...] [--runs 3]
     [--workflows 200] [--steps 10] [--gather 0]

Each URL (default: memory:// and a fresh SQLite file) gets a fresh store per
run: ``--workflows`` runs are started at once, each taking ``--steps`` inline
``wf.step`` checkpoints (every one a fenced write of the run), then, with
``--gather N``, one ``wf.gather`` of N no-op activities. Prints the median
runs/s and checkpoints/s of ``--runs`` runs, per URL. The script uses only
the public API, so ``PYTHONPATH=<another checkout>`` measures that code.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

import stem


@stem.task("bench.noop")
async def noop(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
    return 1


async def steps(wf: Any) -> int:
    total = 0
    for i in range(wf.params["steps"]):
        total += await wf.step(f"s{i}", lambda i=i: i)
    if wf.params["gather"]:
        values = await wf.gather(
            *(wf.activity("bench.noop") for _ in range(wf.params["gather"]))
        )
        total += sum(values)
    return total


APP = stem.App(tasks=[noop], workflows=[stem.WorkflowScript("bench.steps", steps)])


async def one_run(url: str, workflows: int, n_steps: int, gather: int) -> float:
    async with (
        stem.Client.from_url(url, app=APP) as client,
        client.worker(concurrency=32, claim_wait=0.05),
    ):
        params = {"steps": n_steps, "gather": gather}
        t0 = time.perf_counter()
        ids = [
            await client.workflows.start("bench.steps", params)
            for _ in range(workflows)
        ]
        for run_id in ids:
            await client.workflows.wait(run_id, timeout=600)
        return time.perf_counter() - t0


def fresh(url: str, tmp: Path, i: int) -> str:
    return f"sqlite:///{tmp / f'wf-{i}.db'}" if url == "sqlite" else url


async def main(
    urls: list[str], runs: int, workflows: int, n_steps: int, gather: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for url in urls:
            times = [
                await one_run(fresh(url, Path(tmp), i), workflows, n_steps, gather)
                for i in range(runs)
            ]
            median = statistics.median(times)
            checkpoints = workflows * (n_steps + gather)
            print(
                f"{url.split(':')[0]:9} {workflows} runs x {n_steps} steps"
                f"{f' + gather of {gather}' if gather else ''}: "
                f"{workflows / median:,.0f} runs/s, {checkpoints / median:,.0f} "
                f"checkpoints/s (median of {runs}: "
                f"{', '.join(f'{t:.2f}' for t in times)} s) [{stem.__file__}]"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--url",
        action="append",
        help="memory://, sqlite, redis://..., postgresql://...",
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workflows", type=int, default=200)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--gather", type=int, default=0)
    ns = parser.parse_args()
    trio.run(
        main,
        ns.url or ["memory://", "sqlite"],
        ns.runs,
        ns.workflows,
        ns.steps,
        ns.gather,
    )
