"""What relaying lifecycle events costs a worker: N no-op tasks drained by one
in-process worker on a shared backend, in three modes, each run in a fresh
process, the modes interleaved:

- ``no-relay``: the EventRelay is not started (Stem before the event log);
- ``idle``: the relay runs and nobody listens (it asks the backend every
  5 s whether anyone does; the event bus has no subscriber, so the worker
  builds no event payloads);
- ``listened``: a listener is registered, so every task's received, started
  and succeeded events are encoded and appended to the backend's event log
  in batches.

Prints drain tasks/s per mode (median of --runs), the cost of each mode
against ``no-relay``, and the load average.

Usage: .venv/bin/python benchmarks/events_overhead.py [--backend sqlite]
       [--backend redis] [--total 5000] [--concurrency 50] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import stem  # noqa: E402
import stem._client  # noqa: E402
from benchmarks._harness import fresh_url, load, median  # noqa: E402

MODES = ("no-relay", "idle", "listened")


async def one_run(
    backend: str, mode: str, total: int, concurrency: int
) -> tuple[float, float]:
    done = trio.Event()
    count = [0]

    @stem.task("noop")
    async def noop(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        count[0] += 1
        if count[0] == total:
            done.set()

    if mode == "no-relay":

        async def no_relay(*args: Any) -> None:
            del args

        stem._client.start_relay = no_relay  # type: ignore[assignment]
    with fresh_url(backend) as url:
        async with stem.Client.from_url(url, tasks=[noop]) as client:
            log = client.event_log()
            assert log is not None
            if mode == "listened":
                await log.listen("bench", ttl=3600)
            for first in range(0, total, 500):
                n = min(500, total - first)
                await client.publish([client.build_envelope("noop") for _ in range(n)])
            start, cpu = time.perf_counter(), time.process_time()
            async with client.worker(concurrency=concurrency):
                await done.wait()
                seconds = time.perf_counter() - start
                cpu = time.process_time() - cpu
            relayed = await log.last_cursor()
            if mode == "listened":
                assert relayed > 0, "the relay wrote nothing"
    return total / seconds, cpu / total * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", action="append", choices=["sqlite", "redis"])
    parser.add_argument("--total", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.child:
        backend, mode = ns.child
        rate, cpu = trio.run(one_run, backend, mode, ns.total, ns.concurrency)
        print(json.dumps({"rate": rate, "cpu": cpu}))
        return
    print(
        f"{ns.total} no-op tasks, one in-process worker (concurrency "
        f"{ns.concurrency}); median of {ns.runs} runs, modes interleaved, "
        f"each run in a fresh process; load average {load()}"
    )
    for backend in ns.backend or ["sqlite"]:
        samples: dict[str, list[float]] = {m: [] for m in MODES}
        cpus: dict[str, list[float]] = {m: [] for m in MODES}
        for _ in range(ns.runs):
            for mode in MODES:
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--child",
                        backend,
                        mode,
                        "--total",
                        str(ns.total),
                        "--concurrency",
                        str(ns.concurrency),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                figures = json.loads(out.stdout.strip().splitlines()[-1])
                samples[mode].append(figures["rate"])
                cpus[mode].append(figures["cpu"])
        base = median(cpus["no-relay"])
        print(f"{backend}: CPU of the whole process per task (robust to load), wall")
        for mode in MODES:
            cpu = median(cpus[mode])
            runs = ", ".join(f"{s:,.0f}" for s in cpus[mode])
            print(
                f"  {mode:9} {cpu:6.0f} us CPU/task ({cpu - base:+5.0f} us vs "
                f"no-relay; runs: {runs}); {median(samples[mode]):>6,.0f} tasks/s"
            )
    print(f"load average after: {load()}")


if __name__ == "__main__":
    main()
