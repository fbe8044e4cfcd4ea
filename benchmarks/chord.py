"""Chord of 1,000 no-op members: seconds from submit to the callback's result.

Run: .venv/bin/python benchmarks/chord.py [--members 1000] [--runs 3]
Prints one line per backend (memory, sqlite) with the median of the runs.
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


@stem.task("noop")
async def noop(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
    return 1


@stem.task("count")
async def count(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
    return len(ctx.previous_result)


async def one_run(url: str, members: int, concurrency: int) -> float:
    async with (
        stem.Client.from_url(url, tasks=[noop, count]) as client,
        client.worker(concurrency=concurrency, claim_wait=0.05),
    ):
        t0 = time.perf_counter()
        handle = await client.canvas.chord(
            [stem.signature("noop") for _ in range(members)],
            callback=stem.signature("count"),
        )
        value = await handle.get(timeout=600)
        elapsed = time.perf_counter() - t0
    assert value == members, value
    return elapsed


async def main(members: int, runs: int, concurrency: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for backend in ("memory", "sqlite"):
            times = []
            for i in range(runs):
                url = (
                    "memory://"
                    if backend == "memory"
                    else f"sqlite:///{Path(tmp) / f'chord-{i}.db'}"
                )
                times.append(await one_run(url, members, concurrency))
            median = statistics.median(times)
            print(
                f"chord of {members} no-op members, {backend:6}: "
                f"{median:.3f} s submit->callback result (median of {runs}; "
                f"runs {', '.join(f'{t:.3f}' for t in times)}; "
                f"{members / median:,.0f} members/s)"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=50)
    ns = parser.parse_args()
    trio.run(main, ns.members, ns.runs, ns.concurrency)
