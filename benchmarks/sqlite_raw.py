"""Raw throughput of the SQLite adapter (no worker): publish N envelopes in
batches, then claim + ack them in batches; then a worker-shaped loop (claim
100, store 100 results, ack 100) while a producer publishes; and the pickup
latency between two connections (the cross-process path: publish -> a
waiting claim on another connection returns).

Usage: .venv/bin/python benchmarks/sqlite_raw.py [--total 20000] [--batch 100]
       [--synchronous NORMAL] [--poll-interval 0.05]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stem._envelope import Envelope
from stem._result import TaskResult
from stem._states import TaskState
from stem.adapters.sqlite import open_backend


def envelopes(prefix: str, total: int, queue: str) -> list[Envelope]:
    return [
        Envelope(id=f"{prefix}{i:07d}", name="noop", queue=queue, args={"i": i})
        for i in range(total)
    ]


async def throughput(url: str, total: int, batch: int) -> None:
    async with open_backend(url) as backend:
        broker = backend.broker
        batch_envs = envelopes("t", total, "bench")
        start = time.perf_counter()
        for i in range(0, total, batch):
            await broker.publish(batch_envs[i : i + batch])
        published = time.perf_counter() - start
        start = time.perf_counter()
        seen = 0
        while seen < total:
            got = await broker.claim(["bench"], limit=batch, lease=60, consumer="c1")
            if not got:
                break
            await broker.ack(got)
            seen += len(got)
        drained = time.perf_counter() - start
        print(
            f"publish: {total} envelopes in batches of {batch}: "
            f"{total / published:,.0f}/s"
        )
        print(f"claim+ack: {seen} in batches of {batch}: {seen / drained:,.0f}/s")


async def worker_shaped(url: str, total: int, batch: int) -> None:
    """A producer and a consumer at once; the consumer does what a worker
    does per batch: claim, store SUCCEEDED results, ack."""
    async with open_backend(url) as backend:
        broker = backend.broker
        batch_envs = envelopes("w", total, "work")
        start = time.perf_counter()
        done = 0

        async def produce() -> None:
            for i in range(0, total, batch):
                await broker.publish(batch_envs[i : i + batch])

        async def consume() -> None:
            nonlocal done
            while done < total:
                got = await broker.claim(
                    ["work"], limit=batch, lease=60, consumer="c1", wait=1
                )
                results = [
                    TaskResult(
                        task_id=d.task_id,
                        state=TaskState.SUCCEEDED,
                        value=None,
                        attempt=1,
                        name="noop",
                        queue="work",
                    )
                    for d in got
                ]
                await backend.results.set_state(results, ttl=3600)
                await broker.ack(got)
                done += len(got)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            nursery.start_soon(consume)
        elapsed = time.perf_counter() - start
        print(
            f"publish || claim+set_state+ack ({batch}/batch): "
            f"{total / elapsed:,.0f} tasks/s"
        )


async def pickup(url: str, rounds: int) -> None:
    async with open_backend(url) as producer, open_backend(url) as consumer:
        latencies: list[float] = []
        for i in range(rounds):
            sent: list[float] = []

            async def publish_later(i: int = i, sent: list[float] = sent) -> None:
                await trio.sleep(random.uniform(0.0, 0.1))
                sent.append(time.perf_counter())
                await producer.broker.publish(
                    [Envelope(id=f"p{i:06d}", name="noop", queue="lat")]
                )

            async with trio.open_nursery() as nursery:
                nursery.start_soon(publish_later)
                got = await consumer.broker.claim(
                    ["lat"], limit=1, lease=30, consumer="c1", wait=5
                )
            latencies.append(time.perf_counter() - sent[0])
            await consumer.broker.ack(got)
        latencies.sort()
        print(
            f"pickup latency across connections ({rounds} rounds): "
            f"median {statistics.median(latencies) * 1000:.1f} ms, "
            f"p90 {latencies[int(rounds * 0.9)] * 1000:.1f} ms, "
            f"max {latencies[-1] * 1000:.1f} ms"
        )


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        query = f"?synchronous={args.synchronous}&poll_interval={args.poll_interval}"
        base = f"sqlite:///{Path(tmp) / 'bench.db'}{query}"
        await throughput(base, args.total, args.batch)
        await worker_shaped(base, args.total, args.batch)
        await pickup(base, args.rounds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--synchronous", default="NORMAL")
    parser.add_argument("--poll-interval", type=float, default=0.05)
    trio.run(main, parser.parse_args())
