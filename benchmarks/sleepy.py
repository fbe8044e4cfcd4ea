"""Sleepy tasks: 1,000 tasks that each sleep 10-50 ms (uniform, seeded),
drained by one worker at concurrency 50. Prints the drain time per backend
against the ideal (total sleep / 50) and the efficiency (ideal / measured),
medians of --runs runs.

``--workers 2`` (SQLite, Redis, Postgres) shares the queue between two worker
processes: the tasks are published due 1 s later, so both workers are idle
and waiting when they become claimable; the drain runs from that moment to
the last settlement in either worker, the ideal is total sleep / (50 x
workers), and each worker's share of the tasks is printed. A worker that
hoards tasks in its prefetch while the other idles shows as a lower
efficiency and an uneven share.

Usage: .venv/bin/python benchmarks/sleepy.py [--backend redis] [-n 1000]
       [--workers 2] [--prefetch N] [--ms 100,300] [--concurrency 10]
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

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
#: tasks are published due this much later when workers share the queue
SHARED_START = 1.0


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


async def shared_run(
    backend: str,
    total: int,
    workers: int,
    prefetch: int,
    ms: tuple[float, float] = (10, 50),
    concurrency: int = CONCURRENCY,
) -> tuple[float, float, list[int]]:
    """(drain seconds, ideal seconds, tasks per worker) of ``workers`` worker
    processes sharing one queue, on a fresh store."""
    rng = random.Random(1234)
    sleeps = [rng.uniform(*ms) for _ in range(total)]
    ideal = sum(sleeps) / 1000 / concurrency / workers
    with fresh_url(backend) as url:
        procs = [
            spawn_worker(url, "share", concurrency=concurrency, prefetch=prefetch)
            for _ in range(workers)
        ]
        try:
            async with stem.Client.from_url(url, app=app) as client:
                due = stem.now() + SHARED_START
                for start in range(0, total, 100):
                    await client.publish(
                        [
                            client.build_envelope(
                                "bench.sleep", {"ms": ms}, countdown=due - stem.now()
                            )
                            for ms in sleeps[start : start + 100]
                        ]
                    )
                while True:
                    stats = await client.queue_stats("default")
                    if stats.pending + stats.delayed + stats.in_flight == 0:
                        break
                    await trio.sleep(0.05)
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
        results = [await trio.to_thread.run_sync(worker_result, p) for p in procs]
    seconds = max(r["last"] for r in results) - due
    return seconds, ideal, [int(r["processed"]) for r in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common_args(parser)
    parser.add_argument("-n", type=int, default=1000, help="tasks per run")
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes sharing the queue"
    )
    parser.add_argument(
        "--prefetch", type=int, default=-1, help="with --workers (-1: default)"
    )
    parser.add_argument(
        "--ms",
        type=lambda text: tuple(float(x) for x in text.split(",")),
        default=(10.0, 50.0),
        help="with --workers: task sleep range LO,HI in ms (10,50)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=CONCURRENCY, help="with --workers"
    )
    args = parser.parse_args()
    figures: dict[str, dict[str, Any]] = {}
    if args.workers > 1:
        for backend in args.backend or BACKENDS[1:]:
            shared = [
                trio.run(
                    shared_run,
                    backend,
                    args.n,
                    args.workers,
                    args.prefetch,
                    args.ms,
                    args.concurrency,
                )
                for _ in range(args.runs)
            ]
            seconds = median([r[0] for r in shared])
            ideal = shared[0][1]
            shares = [r[2] for r in shared]
            figures[backend] = {
                "seconds": round(seconds, 3),
                "ideal_seconds": round(ideal, 3),
                "efficiency": round(ideal / seconds, 3),
                "shares": shares,
            }
            if not args.json:
                print(
                    f"{backend:9s} {args.n} sleepy tasks ({args.ms[0]:g}-{args.ms[1]:g}"
                    f" ms) on {args.workers} workers x {args.concurrency} (prefetch "
                    f"{args.prefetch}) in {seconds:6.3f} s (ideal "
                    f"{ideal:.3f} s, efficiency {ideal / seconds:.0%}); tasks per "
                    f"worker in each run: {shares}",
                    flush=True,
                )
        if args.json:
            emit({"sleepy_shared": figures}, True)
        return
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
