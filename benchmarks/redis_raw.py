"""Raw throughput of the Redis adapter (no worker): publish N envelopes in
batches, then claim + ack them in batches, and measure pickup latency
(publish -> a waiting claim returns) for single messages.

Usage: .venv/bin/python benchmarks/redis_raw.py [--url redis://127.0.0.1:6379/0]
Without --url it starts a throwaway redis-server on a free port.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stem._envelope import Envelope
from stem.adapters.redis import open_backend


async def throughput(url: str, total: int, batch: int) -> None:
    async with open_backend(url, namespace=f"bench{uuid.uuid4().hex[:8]}") as backend:
        broker = backend.broker
        envelopes = [
            Envelope(id=f"t{i:07d}", name="noop", queue="bench", args={"i": i})
            for i in range(total)
        ]
        start = time.perf_counter()
        for i in range(0, total, batch):
            await broker.publish(envelopes[i : i + batch])
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
        print(
            f"end to end (publish then drain): {total / (published + drained):,.0f}/s"
        )


async def pickup(url: str, rounds: int) -> None:
    ns = f"bench{uuid.uuid4().hex[:8]}"
    async with (
        open_backend(url, namespace=ns) as producer,
        open_backend(url, namespace=ns) as consumer,
    ):
        latencies: list[float] = []
        for i in range(rounds):
            sent: list[float] = []

            async def publish_later(i: int = i, sent: list[float] = sent) -> None:
                await trio.sleep(0.002)
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
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
        print(
            f"pickup (publish by another backend -> waiting claim returns), "
            f"{rounds} rounds: p50 {p50:.2f} ms, p99 {p99:.2f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url")
    parser.add_argument("--total", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=500)
    args = parser.parse_args()
    server = None
    url = args.url
    tmp = None
    if url is None:
        binary = shutil.which("redis-server")
        if binary is None:
            sys.exit("redis-server not found; pass --url")
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        tmp = tempfile.TemporaryDirectory()
        server = subprocess.Popen(
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                tmp.name,
            ],
            stdout=subprocess.DEVNULL,
        )
        time.sleep(0.3)
        url = f"redis://127.0.0.1:{port}/0"
    try:
        trio.run(throughput, url, args.total, args.batch)
        trio.run(pickup, url, args.rounds)
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
