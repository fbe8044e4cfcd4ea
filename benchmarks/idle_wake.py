"""What an idle process pays to be woken: a bare ``PING`` on Stem's
Trio-native Redis connection back to back, then with the caller sleeping
between pings (as a producer at 100 tasks/s does). Prints p50/p99 per gap
and the load average.

Usage: .venv/bin/python benchmarks/idle_wake.py [--url redis://127.0.0.1:6379/0]
       [-n 300] [--gap 0 --gap 0.001 --gap 0.01]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._harness import REDIS, percentile
from stem.adapters.redis._native import NativePool


async def measure(url: str, n: int, gaps: list[float]) -> None:
    pool = NativePool(url, connect_timeout=2, command_timeout=5, max_connections=2)
    ping = [(("PING",), {})]
    try:
        await pool.execute(ping, transaction=False, callbacks=None)
        for gap in gaps:
            took: list[float] = []
            for _ in range(n):
                if gap:
                    await trio.sleep(gap)
                began = time.perf_counter()
                await pool.execute(ping, transaction=False, callbacks=None)
                took.append(time.perf_counter() - began)
            p50, p99 = (percentile(took, q) * 1e6 for q in (0.5, 0.99))
            print(
                f"gap {gap * 1e3:5.1f} ms: PING p50 {p50:6.0f} us  p99 {p99:6.0f} us"
                f"  (load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
    finally:
        await pool.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=REDIS.partition("?")[0])
    parser.add_argument("-n", type=int, default=300)
    parser.add_argument("--gap", type=float, action="append")
    args = parser.parse_args()
    trio.run(measure, args.url, args.n, args.gap or [0.0, 0.001, 0.01])


if __name__ == "__main__":
    main()
