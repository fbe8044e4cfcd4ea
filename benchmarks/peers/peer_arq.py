"""arq on Redis (poll_delay tuned to 10 ms; 0.5 s by default)."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from _common import RECORDER, Peer, main, python, redis_url

QUEUE = "bench:arq"


async def noop(ctx: dict[str, Any]) -> None:
    RECORDER.hit()


async def pickup(ctx: dict[str, Any], sent: float) -> None:
    RECORDER.hit(sent=sent)


async def sleep(ctx: dict[str, Any], ms: float) -> None:
    began = time.time()
    await asyncio.sleep(ms / 1000)
    RECORDER.hit(started=began)


def _settings() -> Any:
    from arq.connections import RedisSettings

    return RedisSettings.from_dsn(redis_url())


def run_worker(concurrency: int) -> None:
    from arq.worker import Worker

    worker = Worker(
        functions=[noop, pickup, sleep],
        redis_settings=_settings(),
        queue_name=QUEUE,
        max_jobs=concurrency,
        poll_delay=0.01,
        keep_result=0,
        handle_signals=True,
    )
    worker.run()


class _Producer:
    def __init__(self) -> None:
        from arq import create_pool

        self.loop = asyncio.new_event_loop()
        self.pool = self.loop.run_until_complete(create_pool(_settings()))

    def bulk(self, jobs: list[tuple[str, dict[str, Any]]]) -> None:
        async def go() -> None:
            for i in range(0, len(jobs), 100):
                await asyncio.gather(
                    *(
                        self.pool.enqueue_job(name, _queue_name=QUEUE, **kw)
                        for name, kw in jobs[i : i + 100]
                    )
                )

        self.loop.run_until_complete(go())

    def one(self, name: str, kw: dict[str, Any]) -> None:
        self.loop.run_until_complete(
            self.pool.enqueue_job(name, _queue_name=QUEUE, **kw)
        )

    def reset(self) -> None:
        self.loop.run_until_complete(self.pool.flushdb())


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        run_worker(int(sys.argv[2]))
    else:
        producer = _Producer()
        main(
            Peer(
                name="arq",
                backend="redis",
                worker_argv=lambda c: [python(), __file__, "worker", str(c)],
                bulk=producer.bulk,
                one=producer.one,
                reset=producer.reset,
                notes="max_jobs=10, poll_delay=10 ms",
            )
        )
