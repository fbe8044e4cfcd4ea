"""Throughput: enqueue 20,000 no-op tasks, then drain them with one worker at
concurrency 10; prints the enqueue rate and the drain rate per backend
(medians of --runs runs).

Enqueue: ``client.enqueue()`` calls from 100 concurrent Trio tasks in one
producer process (the broker actor batches what arrives together). Drain: one
worker process (in-process for memory) from its start until every task's
result is stored and acked.

Usage: .venv/bin/python benchmarks/throughput.py [--backend redis] [-n 20000]
"""

from __future__ import annotations

import argparse
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

PRODUCERS = 100


async def enqueue_all(client: stem.Client, total: int) -> float:
    """Seconds to enqueue ``total`` no-op tasks from PRODUCERS tasks."""
    began = time.perf_counter()

    async def producer(count: int) -> None:
        for _ in range(count):
            await client.enqueue("bench.noop")

    async with trio.open_nursery() as nursery:
        share, extra = divmod(total, PRODUCERS)
        for i in range(PRODUCERS):
            nursery.start_soon(producer, share + (1 if i < extra else 0))
    return time.perf_counter() - began


async def one_run(
    backend: str, total: int, concurrency: int, prefetch: int = -1
) -> tuple[float, float]:
    """(enqueue tasks/s, drain tasks/s) of one run on a fresh store."""
    with fresh_url(backend) as url:
        async with stem.Client.from_url(url, app=app) as client:
            enqueue = await enqueue_all(client, total)
            if backend == "memory":
                began = time.perf_counter()
                async with client.worker(
                    concurrency=concurrency, prefetch=prefetch
                ) as worker:
                    await wait_processed(worker, total)
                    await client.flush()
                    drain = time.perf_counter() - began
            else:
                proc = spawn_worker(
                    url,
                    "drain",
                    concurrency=concurrency,
                    count=total,
                    prefetch=prefetch,
                )
                drain = await trio.to_thread.run_sync(_go_and_wait, proc)
            stats = await client.queue_stats()
            assert stats.pending == stats.in_flight == 0, stats
    return total / enqueue, total / drain


def _go_and_wait(proc: object) -> float:
    result = worker_result(proc)  # type: ignore[arg-type]
    return float(result["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common_args(parser)
    parser.add_argument("-n", type=int, default=20_000, help="tasks per run")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument(
        "--prefetch",
        type=int,
        default=-1,
        help="worker prefetch (-1: = concurrency, the default); 200 is the "
        "documented setting for floods of short tasks",
    )
    args = parser.parse_args()
    figures: dict[str, dict[str, float]] = {}
    for backend in args.backend or BACKENDS:
        runs = [
            trio.run(one_run, backend, args.n, args.concurrency, args.prefetch)
            for _ in range(args.runs)
        ]
        figures[backend] = {
            "enqueue_per_s": round(median([r[0] for r in runs])),
            "drain_per_s": round(median([r[1] for r in runs])),
            "drain_runs": [round(r[1]) for r in runs],  # type: ignore[dict-item]
        }
        if not args.json:
            print(
                f"{backend:9s} enqueue {figures[backend]['enqueue_per_s']:>8,}/s   "
                f"drain {figures[backend]['drain_per_s']:>8,}/s   "
                f"(drain runs: {figures[backend]['drain_runs']})",
                flush=True,
            )
    if args.json:
        emit({"throughput": figures}, True)


if __name__ == "__main__":
    main()
