"""Simulated time: wall and CPU seconds a MockClock run of the examples costs.

examples/order_workflow.py sleeps a simulated day inside a durable workflow;
examples/beat.py runs beat and a worker for two simulated days. Under
``trio.testing.MockClock(autojump_threshold=0)`` time jumps straight to the
next deadline, so the cost should follow the number of events (fires, steps),
not the simulated duration. Each example's ``main`` is imported once, then
run --runs times (interleaved) in this process; the figures are the medians
of the ``trio.run`` alone (imports excluded), with the load average.

Usage: .venv/bin/python benchmarks/simtime.py [--runs 5] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import runpy
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio
import trio.testing

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._harness import emit, median  # noqa: E402

#: example -> what it simulates
EXAMPLES = {
    "order_workflow.py": "a workflow sleeping 1 simulated day",
    "beat.py": "beat + worker over 2 simulated days",
}


def load(name: str) -> Callable[[], Awaitable[None]]:
    namespace = runpy.run_path(str(ROOT / "examples" / name), run_name="simtime")
    main: Callable[[], Awaitable[None]] = namespace["main"]
    return main


def run_once(main: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    """Wall and CPU seconds of one ``trio.run(main)`` under an autojump clock
    (the example's own output is discarded)."""
    wall, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(runs: int) -> dict[str, dict[str, float]]:
    mains = {name: load(name) for name in EXAMPLES}
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in EXAMPLES}
    for _ in range(runs):
        for name, main in mains.items():  # interleaved
            samples[name].append(run_once(main))
    return {
        name: {
            "wall_s": round(median([w for w, _ in got]), 3),
            "cpu_s": round(median([c for _, c in got]), 3),
        }
        for name, got in samples.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs; medians count")
    parser.add_argument("--json", action="store_true", help="one JSON line out")
    args = parser.parse_args()
    before = os.getloadavg()
    figures = measure(args.runs)
    after = os.getloadavg()
    out: dict[str, object] = {}
    for name, fig in figures.items():
        out[name] = f"{fig['wall_s']} s wall, {fig['cpu_s']} s CPU ({EXAMPLES[name]})"
    out["runs"] = args.runs
    out["load average (1 min) before, after"] = f"{before[0]:.2f}, {after[0]:.2f}"
    if args.json:
        emit({**figures, "runs": args.runs, "load": [before[0], after[0]]}, True)
    else:
        emit(out, False)


if __name__ == "__main__":
    main()
