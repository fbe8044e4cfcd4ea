"""Round trips per task: one in-process worker drains N no-op tasks on Redis
while every round trip (``Conn.run``, ``Conn.execute``, ``Conn.script``) is
counted by caller. Prints tasks/s, round trips per task and the split, per prefetch
setting, alternating the settings, with the load average.

Usage: .venv/bin/python benchmarks/roundtrips.py [-n 5000] [--rounds 2]
       [--prefetch 10 --prefetch -1]
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import stem
from benchmarks._harness import fresh_url, wait_processed
from benchmarks.bench_app import app
from stem.adapters.redis import _conn

CALLS: collections.Counter[str] = collections.Counter()
_run = _conn.Conn.run
_execute = _conn.Conn.execute
_script = _conn.Conn.script


def _name(fn: Any) -> str:
    target = getattr(fn, "func", fn)
    return str(target.__qualname__.split(".<locals>")[0])


async def _counted_run(
    self: _conn.Conn, make: Callable[[], Awaitable[Any]], *, until: float | None = None
) -> Any:
    name = _name(make)
    if not name.startswith("Conn."):  # execute/script on redis-py count below
        CALLS[name] += 1
    return await _run(self, make, until=until)


async def _counted_execute(
    self: _conn.Conn, fill: Callable[[Any], Any], **kwargs: Any
) -> Any:
    CALLS[_name(fill)] += 1
    return await _execute(self, fill, **kwargs)


async def _counted_script(
    self: _conn.Conn, name: str, *args: Any, **kwargs: Any
) -> Any:
    CALLS[f"script {name}"] += 1
    return await _script(self, name, *args, **kwargs)


async def one_run(prefetch: int, n: int) -> None:
    with fresh_url("redis") as url:
        async with stem.Client.from_url(url, app=app) as client:
            for start in range(0, n, 500):
                count = min(500, n - start)
                await client.publish(
                    [client.build_envelope("bench.noop", {}) for _ in range(count)]
                )
            CALLS.clear()
            began = time.perf_counter()
            async with client.worker(concurrency=10, prefetch=prefetch) as worker:
                await wait_processed(worker, n)
                await client.flush()
            seconds = time.perf_counter() - began
    total = sum(CALLS.values())
    split = ", ".join(f"{k}={v / n:.3f}" for k, v in CALLS.most_common(5))
    print(
        f"prefetch {prefetch:>4}: {n / seconds:7,.0f} tasks/s, {total / n:.3f} "
        f"round trips per task ({split}); load {os.getloadavg()[0]:.1f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--prefetch", type=int, action="append")
    args = parser.parse_args()
    _conn.Conn.run = _counted_run  # type: ignore[method-assign]
    _conn.Conn.execute = _counted_execute  # type: ignore[method-assign]
    _conn.Conn.script = _counted_script  # type: ignore[method-assign]
    for _ in range(args.rounds):
        for prefetch in args.prefetch or (10, -1):
            trio.run(one_run, prefetch, args.n)


if __name__ == "__main__":
    main()
