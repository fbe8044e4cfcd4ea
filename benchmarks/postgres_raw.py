"""Raw throughput and pickup latency of the Postgres adapter (no worker).

    .venv/bin/python benchmarks/postgres_raw.py            # throwaway cluster
    .venv/bin/python benchmarks/postgres_raw.py --url postgresql://...

1. publish N envelopes in batches of 100 (one statement per batch);
2. claim + ack in batches of 100 through the adapter, with 1 and with 4
   concurrent claimers;
3. pickup latency: one message published every 10 ms by one backend while a
   second backend (own pool and LISTEN connection, so it is woken by NOTIFY
   exactly as another process would be) blocks in claim(wait=...); the time
   from the start of publish() to claim() returning.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stem._envelope import Envelope
from stem.adapters.postgres import open_backend


def _envelopes(n: int, prefix: str) -> list[Envelope]:
    return [
        Envelope(id=f"{prefix}{i:07d}", name="noop", args={"i": i}) for i in range(n)
    ]


async def _publish(backend: object, envs: list[Envelope], batch: int) -> float:
    broker = backend.broker  # type: ignore[attr-defined]
    start = time.perf_counter()
    for i in range(0, len(envs), batch):
        await broker.publish(envs[i : i + batch])
    return time.perf_counter() - start


async def _drain(backend: object, total: int, claimers: int, batch: int) -> float:
    broker = backend.broker  # type: ignore[attr-defined]
    done = 0

    async def claimer() -> None:
        nonlocal done
        while done < total:
            got = await broker.claim(
                ["default"], limit=batch, lease=60, consumer="bench", wait=0.05
            )
            if got:
                await broker.ack(got)
                done += len(got)

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(claimers):
            nursery.start_soon(claimer)
    return time.perf_counter() - start


async def _pickup(url: str, count: int, interval: float) -> list[float]:
    latencies: list[float] = []
    async with open_backend(url) as producer, open_backend(url) as consumer:
        sent: dict[str, float] = {}

        async def consume() -> None:
            while len(latencies) < count:
                got = await consumer.broker.claim(
                    ["pickup"], limit=10, lease=60, consumer="c", wait=5
                )
                now = time.perf_counter()
                for delivery in got:
                    latencies.append(now - sent[delivery.task_id])
                if got:
                    await consumer.broker.ack(got)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            await trio.sleep(0.2)
            for i in range(count):
                env = Envelope(id=f"p{i:06d}", name="noop", queue="pickup")
                sent[env.id] = time.perf_counter()
                await producer.broker.publish([env])
                await trio.sleep(interval)
    return latencies


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(url: str, total: int, batch: int) -> None:
    async with open_backend(url) as backend:
        for claimers in (1, 4):
            envs = _envelopes(total, f"c{claimers}-")
            elapsed = await _publish(backend, envs, batch)
            print(
                f"publish {total} in batches of {batch}: {total / elapsed:,.0f}/s "
                f"({elapsed:.2f} s)"
            )
            elapsed = await _drain(backend, total, claimers, batch)
            print(
                f"claim+ack {total} in batches of {batch}, {claimers} claimer(s): "
                f"{total / elapsed:,.0f}/s ({elapsed:.2f} s)"
            )
        envs = _envelopes(total, "mix-")
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_publish, backend, envs, batch)
            nursery.start_soon(_drain, backend, total, 4, batch)
        elapsed = time.perf_counter() - start
        print(
            f"publish and claim+ack {total} concurrently (4 claimers): "
            f"{total / elapsed:,.0f}/s end to end"
        )
    latencies = await _pickup(url, 500, 0.01)
    print(
        f"pickup latency over NOTIFY at ~100 msg/s ({len(latencies)} messages): "
        f"p50 {_pct(latencies, 0.5) * 1e3:.2f} ms, "
        f"p99 {_pct(latencies, 0.99) * 1e3:.2f} ms, "
        f"max {max(latencies) * 1e3:.2f} ms, "
        f"mean {statistics.mean(latencies) * 1e3:.2f} ms"
    )


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="postgresql:// URL (default: throwaway cluster)")
    parser.add_argument("-n", type=int, default=20_000, help="messages per run")
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    if args.url:
        sep = "&" if "?" in args.url else "?"
        trio.run(main, f"{args.url}{sep}schema={schema}", args.n, args.batch)
        return
    from tests.fixtures_postgres import _start_cluster

    cluster = _start_cluster()
    try:
        trio.run(main, f"{cluster.url}?schema={schema}", args.n, args.batch)
    finally:
        cluster.destroy()


if __name__ == "__main__":
    run()
