"""Recovery: a worker process holding running tasks is killed with SIGKILL;
prints the time from the kill until another worker process has finished all
of them (medians of --runs runs).

The tasks (``bench.hold``: sleep 0.5 s) have ``visibility_timeout=5``, so the
figure is bounded below by what is left of the killed worker's leases (at most
5 s) plus one run of the task: it measures how promptly the backend hands the
expired leases to the surviving worker.

Usage: .venv/bin/python benchmarks/recovery.py [--backend redis]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import stem
from benchmarks._harness import common_args, emit, fresh_url, median, spawn_worker
from benchmarks.bench_app import HOLD_LEASE, recovery_app

BACKENDS = ("sqlite", "redis", "postgres")
APP = "benchmarks.bench_app:recovery_app"
TASKS = 10


async def one_run(backend: str) -> float:
    """Seconds from the SIGKILL to the last held task finished elsewhere."""
    with fresh_url(backend) as url:
        async with stem.Client.from_url(url, app=recovery_app) as client:
            victim = spawn_worker(url, "serve", app=APP, concurrency=TASKS)
            survivor = None
            try:
                ids = [
                    await client.enqueue("bench.hold", {"s": 0.5, "n": i})
                    for i in range(TASKS)
                ]
                with trio.fail_after(30):
                    while True:
                        states = [(await client.get(t)) for t in ids]
                        if all(
                            s is not None and s.state == stem.TaskState.RUNNING
                            for s in states
                        ):
                            break
                        await trio.sleep(0.01)
                survivor = await trio.to_thread.run_sync(
                    lambda: spawn_worker(url, "serve", app=APP, concurrency=TASKS)
                )
                victim.kill()
                killed = time.perf_counter()
                victim.wait()
                for task_id in ids:
                    result = await client.wait_for(task_id, timeout=60)
                    assert result.state == stem.TaskState.SUCCEEDED, result
                return time.perf_counter() - killed
            finally:
                for proc in (victim, survivor):
                    if proc is not None and proc.poll() is None:
                        proc.kill()
                        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common_args(parser)
    args = parser.parse_args()
    figures: dict[str, dict[str, float]] = {}
    for backend in args.backend or BACKENDS:
        if backend == "memory":
            continue  # one process: nothing survives a SIGKILL
        runs = [trio.run(one_run, backend) for _ in range(args.runs)]
        figures[backend] = {
            "seconds": round(median(runs), 2),
            "lease_s": HOLD_LEASE,
        }
        if not args.json:
            print(
                f"{backend:9s} recovered {TASKS} held tasks {median(runs):5.2f} s "
                f"after SIGKILL (lease {HOLD_LEASE:g} s; runs "
                f"{', '.join(f'{r:.2f}' for r in runs)})",
                flush=True,
            )
    if args.json:
        emit({"recovery": figures}, True)


if __name__ == "__main__":
    main()
