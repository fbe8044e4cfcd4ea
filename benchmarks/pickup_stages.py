"""Where a pickup's time goes (Redis or Postgres): the producer (this process) offers
tasks at a fixed rate; a worker in another process marks when it hears each
wake, calls the claim, has the claimed task and starts it (stem's clock,
shared by processes on one machine). Prints p50/p90/p99 of each stage.

It patches the worker's Redis hub and broker to take the marks, so the
figures include that small cost.

Usage: .venv/bin/python benchmarks/pickup_stages.py [--backend redis|postgres]
       [--rate 100] [--seconds 5]
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import stem
from benchmarks._harness import fresh_url, percentile

SEEN: list[tuple[float, float]] = []
MARKS: dict[str, list[float]] = {
    "wake": [],
    "claim_call": [],
    "claimed": [],
    "handed": [],
}


@stem.task("stages.pickup")
async def pickup(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
    SEEN.append((ctx.envelope.enqueued_at, stem.now()))


app = stem.App([pickup])


def _patch(backend: str) -> None:
    if backend == "redis":
        from stem.adapters.redis import _broker as broker_mod
        from stem.adapters.redis import _hub as hub_mod

        broker_class: Any = broker_mod.RedisBroker
    else:
        from stem.adapters.postgres import _broker as pg_broker
        from stem.adapters.postgres import _notify as hub_mod

        broker_class = pg_broker.PostgresBroker
    dispatch = hub_mod.Hub._dispatch
    claim_once = broker_class._claim_once

    def marked_dispatch(self: Any, *args: Any) -> None:
        if backend == "postgres" or args[0].get("type") == "message":
            MARKS["wake"].append(stem.now())
        dispatch(self, *args)

    async def marked_claim(self: Any, *args: Any, **kwargs: Any) -> Any:
        MARKS["claim_call"].append(stem.now())
        out = await claim_once(self, *args, **kwargs)
        if out[0]:
            MARKS["claimed"].append(stem.now())
        return out

    hub_mod.Hub._dispatch = marked_dispatch  # type: ignore[method-assign,assignment]
    broker_class._claim_once = marked_claim
    received = broker_class._received

    def marked_received(self: Any, *args: Any) -> None:
        MARKS["handed"].append(stem.now())
        received(self, *args)

    broker_class._received = marked_received


async def worker(url: str, count: int, backend: str) -> None:
    _patch(backend)
    client = stem.Client.from_url(url, app=app)
    async with client, client.worker(concurrency=10):
        print("READY", flush=True)
        while len(SEEN) < count:
            await trio.sleep(0.05)
    print(json.dumps({"seen": SEEN, **MARKS}), flush=True)


def _before(marks: list[float], at: float) -> float:
    return marks[max(bisect.bisect_right(marks, at) - 1, 0)]


async def producer(backend: str, rate: int, seconds: float) -> None:
    count = int(rate * seconds)
    with fresh_url(backend) as url:
        proc = subprocess.Popen(
            [
                *(sys.executable, __file__, "--worker", url),
                *("--count", str(count), "--backend", backend),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "READY":
            raise SystemExit("the worker did not start")
        calls: list[float] = []
        async with stem.Client.from_url(url, app=app) as client:
            await trio.sleep(0.5)
            began = trio.current_time()
            for i in range(count):
                await trio.sleep_until(began + i / rate)
                t0 = stem.now()
                await client.enqueue("stages.pickup")
                calls.append(stem.now() - t0)
            out, _ = await trio.to_thread.run_sync(proc.communicate)
    got = json.loads(out.strip().splitlines()[-1])
    seen = got["seen"][len(got["seen"]) // 20 :]  # the first 5% warm up
    calls_made = sorted(got["claim_call"])
    stages: dict[str, list[float]] = {
        "producer's enqueue call": calls[len(calls) // 20 :],
        "enqueued -> handed": [],
        "handed -> task started": [],
        "enqueued -> wake heard": [],
        "wake -> claim called": [],
        "claim round trip": [],
        "claimed -> task started": [],
        "pickup (start - enqueued)": [],
    }
    handed = sorted(got["handed"])
    for enqueued, started in seen:
        stages["pickup (start - enqueued)"].append(started - enqueued)
        given = _before(handed, started) if handed else -1.0
        claimed = _before(got["claimed"], started) if got["claimed"] else -1.0
        if enqueued <= given <= started and given >= claimed:
            # Handed by the publish script (one hop, no claim call).
            stages["enqueued -> handed"].append(given - enqueued)
            stages["handed -> task started"].append(started - given)
            continue
        called = _before(calls_made, claimed)
        woken = _before(got["wake"], called)
        stages["enqueued -> wake heard"].append(woken - enqueued)
        stages["wake -> claim called"].append(called - woken)
        stages["claim round trip"].append(claimed - called)
        stages["claimed -> task started"].append(started - claimed)
    load = os.getloadavg()[0]
    print(f"{backend}, rate {rate}/s, {len(seen)} tasks, load {load:.1f}")
    for name, values in stages.items():
        if not values:
            continue
        p50, p90, p99 = (percentile(values, q) * 1e3 for q in (0.5, 0.9, 0.99))
        print(
            f"{name:27s} n {len(values):4d}  p50 {p50:6.2f}  p90 {p90:6.2f}  "
            f"p99 {p99:6.2f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=("redis", "postgres"), default="redis")
    parser.add_argument("--rate", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        trio.run(worker, args.worker, args.count, args.backend)
    else:
        trio.run(producer, args.backend, args.rate, args.seconds)


if __name__ == "__main__":
    main()
