"""taskiq with taskiq-redis (ListQueueBroker) on Redis."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from _common import RECORDER, Peer, main, python, redis_url
from taskiq_redis import ListQueueBroker

broker = ListQueueBroker(redis_url(), queue_name="bench:taskiq")


@broker.task(task_name="noop")
async def noop() -> None:
    RECORDER.hit()


@broker.task(task_name="pickup")
async def pickup(sent: float) -> None:
    RECORDER.hit(sent=sent)


@broker.task(task_name="sleep")
async def sleep(ms: float) -> None:
    began = time.time()
    await asyncio.sleep(ms / 1000)
    RECORDER.hit(started=began)


TASKS = {"noop": noop, "pickup": pickup, "sleep": sleep}


class _Producer:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(broker.startup())

    def bulk(self, jobs: list[tuple[str, dict[str, Any]]]) -> None:
        async def go() -> None:
            for i in range(0, len(jobs), 100):
                await asyncio.gather(
                    *(TASKS[name].kiq(**kw) for name, kw in jobs[i : i + 100])
                )

        self.loop.run_until_complete(go())

    def one(self, name: str, kw: dict[str, Any]) -> None:
        self.loop.run_until_complete(TASKS[name].kiq(**kw))

    def reset(self) -> None:
        import redis

        redis.Redis.from_url(redis_url()).flushdb()


if __name__ == "__main__":
    producer = _Producer()
    main(
        Peer(
            name="taskiq",
            backend="redis",
            worker_argv=lambda c: [
                *(python(), "-m", "taskiq", "worker", "peer_taskiq:broker"),
                *("--workers", "1", "--max-async-tasks", str(c)),
            ],
            bulk=producer.bulk,
            one=producer.one,
            reset=producer.reset,
            notes="taskiq-redis ListQueueBroker, 1 worker process, max-async-tasks=10",
        )
    )
