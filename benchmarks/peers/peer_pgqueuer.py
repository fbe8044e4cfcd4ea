"""pgqueuer on Postgres (asyncpg): one QueueManager."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from _common import RECORDER, Peer, main, postgres_url, python


def run_worker(concurrency: int) -> None:
    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries, QueueManager
    from pgqueuer.models import Job

    async def go() -> None:
        conn = await asyncpg.connect(postgres_url())
        qm = QueueManager(Queries(AsyncpgDriver(conn)))

        @qm.entrypoint("noop")
        async def noop(job: Job) -> None:
            RECORDER.hit()

        @qm.entrypoint("pickup")
        async def pickup(job: Job) -> None:
            RECORDER.hit(sent=json.loads(job.payload or b"{}")["sent"])

        @qm.entrypoint("sleep")
        async def sleep(job: Job) -> None:
            began = time.time()
            await asyncio.sleep(json.loads(job.payload or b"{}")["ms"] / 1000)
            RECORDER.hit(started=began)

        # pgqueuer requires max_concurrent_tasks >= 2 x batch_size
        batch = max(1, concurrency // 2)
        await qm.run(batch_size=batch, max_concurrent_tasks=concurrency)

    asyncio.run(go())


class _Producer:
    def __init__(self) -> None:
        import asyncpg
        from pgqueuer import AsyncpgDriver, Queries

        self.loop = asyncio.new_event_loop()
        conn = self.loop.run_until_complete(asyncpg.connect(postgres_url()))
        self.queries = Queries(AsyncpgDriver(conn))

    def bulk(self, jobs: list[tuple[str, dict[str, Any]]]) -> None:
        async def go() -> None:
            for i in range(0, len(jobs), 100):
                chunk = jobs[i : i + 100]
                await self.queries.enqueue(
                    [name for name, _ in chunk],
                    [json.dumps(kw).encode() if kw else None for _, kw in chunk],
                    [0] * len(chunk),
                )

        self.loop.run_until_complete(go())

    def one(self, name: str, kw: dict[str, Any]) -> None:
        self.loop.run_until_complete(
            self.queries.enqueue(name, json.dumps(kw).encode())
        )

    def reset(self) -> None:
        async def go() -> None:
            try:
                await self.queries.uninstall()
            except Exception:
                pass
            await self.queries.install()

        self.loop.run_until_complete(go())


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        run_worker(int(sys.argv[2]))
    else:
        producer = _Producer()
        main(
            Peer(
                name="pgqueuer",
                backend="postgres",
                worker_argv=lambda c: [python(), __file__, "worker", str(c)],
                bulk=producer.bulk,
                one=producer.one,
                reset=producer.reset,
                notes="max_concurrent_tasks=10, batch_size=5; bulk enqueue x100",
            )
        )
