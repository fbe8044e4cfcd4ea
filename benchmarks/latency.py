"""Pickup latency: tasks offered at a fixed rate (100 and 500 tasks/s); each
records start minus ``enqueued_at`` (both on stem's clock, so across processes
on one machine). Prints p50/p99 per backend and rate (medians of --runs runs).

The producer (this process) enqueues each task on schedule from its own Trio
task; the worker (concurrency 10) runs in another process for SQLite, Redis
and Postgres, in this one for memory. The first 5% of each run is warm-up and
not counted.

Usage: .venv/bin/python benchmarks/latency.py [--backend redis] [--seconds 5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import stem
from benchmarks import bench_app
from benchmarks._harness import (
    BACKENDS,
    common_args,
    emit,
    fresh_url,
    median,
    percentile,
    spawn_worker,
    worker_result,
)

RATES = (100, 500)


async def offer(client: stem.Client, rate: int, count: int) -> None:
    """Enqueue ``count`` pickup tasks, one every 1/rate seconds."""
    began = trio.current_time()
    async with trio.open_nursery() as nursery:
        for i in range(count):
            await trio.sleep_until(began + i / rate)
            nursery.start_soon(client.enqueue, "bench.pickup")


async def one_run(backend: str, rate: int, seconds: float) -> tuple[float, float]:
    """(p50, p99) pickup latency in ms of one run on a fresh store."""
    count = int(rate * seconds)
    with fresh_url(backend) as url:
        async with stem.Client.from_url(url, app=bench_app.app) as client:
            if backend == "memory":
                bench_app.PICKUPS.clear()
                async with client.worker(concurrency=10):
                    await offer(client, rate, count)
                    while len(bench_app.PICKUPS) < count:
                        await trio.sleep(0.01)
                samples = list(bench_app.PICKUPS)
            else:
                proc = spawn_worker(url, "pickup", concurrency=10, count=count)
                await trio.sleep(0.5)  # let it reach its first blocking claim
                await offer(client, rate, count)
                samples = await trio.to_thread.run_sync(worker_result, proc)
    kept = samples[len(samples) // 20 :]
    return percentile(kept, 0.5) * 1e3, percentile(kept, 0.99) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common_args(parser)
    parser.add_argument("--seconds", type=float, default=5.0, help="per run")
    parser.add_argument(
        "--rate", type=int, action="append", help="tasks/s (repeatable; 100 and 500)"
    )
    args = parser.parse_args()
    figures: dict[str, dict[str, float]] = {}
    for backend in args.backend or BACKENDS:
        for rate in args.rate or RATES:
            runs = [
                trio.run(one_run, backend, rate, args.seconds) for _ in range(args.runs)
            ]
            key = f"{backend}@{rate}"
            figures[key] = {
                "p50_ms": round(median([r[0] for r in runs]), 2),
                "p99_ms": round(median([r[1] for r in runs]), 2),
            }
            if not args.json:
                fig = figures[key]
                print(
                    f"{backend:9s} {rate:4d}/s  pickup p50 {fig['p50_ms']:6.2f} ms"
                    f"  p99 {fig['p99_ms']:6.2f} ms",
                    flush=True,
                )
    if args.json:
        emit({"latency": figures}, True)


if __name__ == "__main__":
    main()
