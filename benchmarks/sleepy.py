"""Sleepy tasks: 1,000 tasks that each sleep 10-50 ms (uniform, seeded),
drained by one worker at concurrency 50. Prints the drain time per backend
against the ideal (total sleep / 50) and the efficiency (ideal / measured),
medians of --runs runs.

Usage: .venv/bin/python benchmarks/sleepy.py [--backend redis] [-n 1000]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import stem
from benchmarks._harness import (
    BACKENDS,
    common_args,
    emit,
    fresh_url,
    median,
    spawn_worker,
    wait_processed,
    worker_result,
)
from benchmarks.bench_app import app

CONCURRENCY = 50


async def one_run(backend: str, total: int) -> tuple[float, float]:
    """(drain seconds, ideal seconds) of one run on a fresh store."""
    rng = random.Random(1234)
    sleeps = [rng.uniform(10, 50) for _ in range(total)]
    ideal = sum(sleeps) / 1000 / CONCURRENCY
    with fresh_url(backend) as url:
        async with stem.Client.from_url(url, app=app) as client:
            for start in range(0, total, 100):
                await client.publish(
                    [
                        client.build_envelope("bench.sleep", {"ms": ms})
                        for ms in sleeps[start : start + 100]
                    ]
                )
            if backend == "memory":
                began = time.perf_counter()
                async with client.worker(concurrency=CONCURRENCY) as worker:
                    await wait_processed(worker, total)
                    await client.flush()
                    seconds = time.perf_counter() - began
            else:
                proc = spawn_worker(url, "drain", concurrency=CONCURRENCY, count=total)
                result = await trio.to_thread.run_sync(worker_result, proc)
                seconds = float(result["seconds"])
    return seconds, ideal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common_args(parser)
    parser.add_argument("-n", type=int, default=1000, help="tasks per run")
    args = parser.parse_args()
    figures: dict[str, dict[str, float]] = {}
    for backend in args.backend or BACKENDS:
        runs = [trio.run(one_run, backend, args.n) for _ in range(args.runs)]
        seconds = median([r[0] for r in runs])
        ideal = runs[0][1]
        figures[backend] = {
            "seconds": round(seconds, 3),
            "ideal_seconds": round(ideal, 3),
            "efficiency": round(ideal / seconds, 3),
        }
        if not args.json:
            print(
                f"{backend:9s} {args.n} sleepy tasks in {seconds:6.3f} s "
                f"(ideal {ideal:.3f} s, efficiency {ideal / seconds:.0%})",
                flush=True,
            )
    if args.json:
        emit({"sleepy": figures}, True)


if __name__ == "__main__":
    main()
