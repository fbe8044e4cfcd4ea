"""SAQ on Redis (and on Postgres with PEER_SAQ_BACKEND=postgres)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

from _common import RECORDER, Peer, main, postgres_url, python, redis_url

BACKEND = os.environ.get("PEER_SAQ_BACKEND", "redis")


async def noop(ctx: dict[str, Any]) -> None:
    RECORDER.hit()


async def pickup(ctx: dict[str, Any], *, sent: float) -> None:
    RECORDER.hit(sent=sent)


async def sleep(ctx: dict[str, Any], *, ms: float) -> None:
    began = time.time()
    await asyncio.sleep(ms / 1000)
    RECORDER.hit(started=began)


def _queue() -> Any:
    from saq import Queue

    url = redis_url() if BACKEND == "redis" else postgres_url()
    return Queue.from_url(url, name="bench_saq")


def run_worker(concurrency: int) -> None:
    from saq import Worker

    async def go() -> None:
        queue = _queue()
        await queue.connect()
        worker = Worker(queue, functions=[noop, pickup, sleep], concurrency=concurrency)
        await worker.start()

    asyncio.run(go())


class _Producer:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.queue = _queue()
        self.loop.run_until_complete(self.queue.connect())

    def bulk(self, jobs: list[tuple[str, dict[str, Any]]]) -> None:
        async def go() -> None:
            for i in range(0, len(jobs), 100):
                await asyncio.gather(
                    *(self.queue.enqueue(name, **kw) for name, kw in jobs[i : i + 100])
                )

        self.loop.run_until_complete(go())

    def one(self, name: str, kw: dict[str, Any]) -> None:
        self.loop.run_until_complete(self.queue.enqueue(name, **kw))

    def reset(self) -> None:
        if BACKEND == "redis":
            import redis

            redis.Redis.from_url(redis_url()).flushdb()
        else:
            import subprocess

            # Empty saq's tables (they exist once the queue connected).
            subprocess.run(
                [*("psql", postgres_url(), "-qc"), "DELETE FROM saq_jobs"],
                check=False,
                capture_output=True,
            )


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        run_worker(int(sys.argv[2]))
    else:
        producer = _Producer()
        main(
            Peer(
                name="saq" if BACKEND == "redis" else "saq (postgres)",
                backend=BACKEND,
                worker_argv=lambda c: [python(), __file__, "worker", str(c)],
                bulk=producer.bulk,
                one=producer.one,
                reset=producer.reset,
                notes="1 worker process, concurrency=10",
                env={"PEER_SAQ_BACKEND": BACKEND},
            )
        )
