"""streaQ on Redis: one worker process (asyncio backend), concurrency 10."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from _common import RECORDER, Peer, main, python, redis_url
from streaq import Worker

CONCURRENCY = int(sys.argv[2]) if sys.argv[1:2] == ["worker"] else 10
worker = Worker(
    redis_url=redis_url(),
    queue_name="bench_streaq",
    concurrency=CONCURRENCY,
    handle_signals=True,
)


@worker.task
async def noop() -> None:
    RECORDER.hit()


@worker.task
async def pickup(sent: float) -> None:
    RECORDER.hit(sent=sent)


@worker.task
async def sleep(ms: float) -> None:
    began = time.time()
    await asyncio.sleep(ms / 1000)
    RECORDER.hit(started=began)


TASKS = {"noop": noop, "pickup": pickup, "sleep": sleep}


class _Producer:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(worker.__aenter__())

    def bulk(self, jobs: list[tuple[str, dict[str, Any]]]) -> None:
        async def go() -> None:
            for i in range(0, len(jobs), 100):
                chunk = jobs[i : i + 100]
                await asyncio.gather(
                    *(_send(TASKS[name].enqueue(**kw)) for name, kw in chunk)
                )

        self.loop.run_until_complete(go())

    def one(self, name: str, kw: dict[str, Any]) -> None:
        self.loop.run_until_complete(_send(TASKS[name].enqueue(**kw)))

    def reset(self) -> None:
        import subprocess

        subprocess.run(
            ["redis-cli", "-u", redis_url(), "flushdb"], check=True, capture_output=True
        )


async def _send(task: Any) -> None:
    await task


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        worker.run_sync()
    else:
        producer = _Producer()
        main(
            Peer(
                name="streaq",
                backend="redis",
                worker_argv=lambda c: [python(), __file__, "worker", str(c)],
                bulk=producer.bulk,
                one=producer.one,
                reset=producer.reset,
                notes="1 worker process, concurrency=10",
            )
        )
