"""Scaling out: drain rate with 1, 2 and 4 worker processes on a single
Redis, on a Redis Cluster (3 masters + 3 replicas) and on PostgreSQL.

Starts its own servers on free loopback ports (``tests/_cluster.py``,
``tests/fixtures_redis.py``, ``tests/fixtures_postgres.py``). Each run
queues ``--tasks`` no-op tasks spread round-robin over ``--queues`` queues
(on the cluster they hash to different slots, so different masters), starts
the worker processes (each consumes every queue at ``--concurrency``), lets
them all go at once and times until every queue is empty (pending, delayed
and in flight all 0, read every 20 ms). Runs are interleaved (each round
measures every backend at every process count) and the median of
``--runs`` rounds is printed, with the load average before and after: on a
shared 2-core machine the ratios matter more than the absolute figures.

    .venv/bin/python benchmarks/scale.py                    # about 4 minutes
    .venv/bin/python benchmarks/scale.py --runs 1 --tasks 1000   # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import trio  # noqa: E402

import stem  # noqa: E402

APP = "benchmarks.bench_app:app"
BACKENDS = ("redis", "redis-cluster", "postgres")


# -- servers ------------------------------------------------------------------


@contextmanager
def servers(backends: Sequence[str]) -> Iterator[dict[str, str]]:
    """Start the servers ``backends`` need; their base URLs by backend."""
    from tests._cluster import RedisClusterServers
    from tests.fixtures_postgres import _start_cluster
    from tests.fixtures_redis import RedisServer

    urls: dict[str, str] = {}
    with ExitStack() as stack:
        scratch = Path(tempfile.mkdtemp(prefix="stem-scale-"))
        stack.callback(shutil.rmtree, scratch, True)
        if "redis" in backends:
            single = RedisServer(scratch / "redis")
            (scratch / "redis").mkdir()
            single.start()
            stack.callback(single.stop)
            urls["redis"] = f"redis://127.0.0.1:{single.port}/0"
        if "redis-cluster" in backends:
            cluster = RedisClusterServers(scratch / "cluster")
            stack.callback(cluster.stop)
            cluster.start()
            urls["redis-cluster"] = cluster.url
        if "postgres" in backends:
            pg = _start_cluster()
            stack.callback(pg.destroy)
            urls["postgres"] = pg.url
        yield urls


def fresh(base: str) -> str:
    """``base`` on an empty namespace (Redis) or schema (Postgres)."""
    tag = uuid.uuid4().hex[:10]
    if base.startswith("postgresql"):
        return f"{base}?schema=scale_{tag}"
    return f"{base}?namespace=scale{tag}"


# -- worker processes ---------------------------------------------------------


async def _worker_main(url: str, queues: list[str], concurrency: int) -> None:
    """A worker process: READY once connected, runs from a ``go`` line on
    stdin until the next line, then prints how many tasks it settled."""
    from stem._config import load_app

    async with stem.Client.from_url(url, app=load_app(APP)) as client:
        print("READY", flush=True)
        await trio.to_thread.run_sync(sys.stdin.readline)
        async with client.worker(concurrency=concurrency, queues=queues) as worker:
            await trio.to_thread.run_sync(sys.stdin.readline)
            processed = worker.worker_statistics().processed
    print(json.dumps({"processed": processed}), flush=True)


def spawn(url: str, queues: list[str], concurrency: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "worker", url, ",".join(queues), str(concurrency)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != "READY":
        proc.kill()
        raise RuntimeError(f"worker process did not start: {line!r}")
    return proc


# -- one run ------------------------------------------------------------------


async def _drain(
    url: str, processes: int, tasks: int, queues: list[str], concurrency: int
) -> tuple[float, list[int]]:
    from stem._config import load_app

    async with stem.Client.from_url(url, app=load_app(APP)) as client:
        envelopes = [
            client.build_envelope("bench.noop", {}, queue=queues[i % len(queues)])
            for i in range(tasks)
        ]
        for start in range(0, tasks, 500):
            await client.publish(envelopes[start : start + 500])
        workers: list[subprocess.Popen[str]] = []
        try:
            for _ in range(processes):
                workers.append(
                    await trio.to_thread.run_sync(spawn, url, queues, concurrency)
                )
            broker = client.backend.broker
            began = time.perf_counter()
            for proc in workers:
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
            while True:
                left = 0
                for queue in queues:
                    stats = await broker.stats(queue)
                    left += stats.pending + stats.delayed + stats.in_flight
                if left == 0:
                    break
                await trio.sleep(0.02)
            seconds = time.perf_counter() - began
            counts = []
            for proc in workers:
                out, _ = await trio.to_thread.run_sync(
                    lambda p=proc: p.communicate("stop\n", timeout=120)
                )
                counts.append(json.loads(out.strip().splitlines()[-1])["processed"])
        finally:
            for proc in workers:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    return seconds, counts


def drain(
    base: str, processes: int, *, tasks: int, queues: list[str], concurrency: int
) -> tuple[float, list[int]]:
    """Seconds to drain ``tasks`` with ``processes`` workers, and how many
    each settled."""
    return trio.run(_drain, fresh(base), processes, tasks, queues, concurrency)


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} (1 min), {five:.2f} (5 min)"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        url, queues, concurrency = sys.argv[2], sys.argv[3], int(sys.argv[4])
        trio.run(_worker_main, url, queues.split(","), concurrency)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", action="append", choices=BACKENDS)
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--tasks", type=int, default=4000)
    parser.add_argument("--queues", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the servers this script started stop.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    backends = args.backend or list(BACKENDS)
    counts = [int(n) for n in args.processes.split(",")]
    queues = [f"q{i}" for i in range(args.queues)]
    print(f"load before: {_load()}; {os.cpu_count()} cores", flush=True)
    seconds: dict[tuple[str, int], list[float]] = {}
    with servers(backends) as urls:
        for run in range(args.runs):
            for n in counts:
                for backend in backends:
                    took, shares = drain(
                        urls[backend],
                        n,
                        tasks=args.tasks,
                        queues=queues,
                        concurrency=args.concurrency,
                    )
                    seconds.setdefault((backend, n), []).append(took)
                    print(
                        f"run {run + 1} {backend} x{n}: {args.tasks / took:,.0f} "
                        f"tasks/s (per process {shares}) load {_load()}",
                        flush=True,
                    )
    print(f"load after: {_load()}")
    rows = {}
    print(
        f"\n{args.tasks} no-op tasks over {args.queues} queues, concurrency "
        f"{args.concurrency} per process, median of {args.runs}"
    )
    print("| backend | " + " | ".join(f"{n} process(es)" for n in counts) + " |")
    print("|---|" + "---|" * len(counts))
    for backend in backends:
        rates = [args.tasks / statistics.median(seconds[(backend, n)]) for n in counts]
        rows[backend] = rates
        base = rates[0]
        cells = [f"{r:,.0f}/s ({r / base:.2f}x)" for r in rates]
        print(f"| {backend} | " + " | ".join(cells) + " |")
    if args.json:
        print(json.dumps({"processes": counts, "rates": rows, "load": _load()}))


if __name__ == "__main__":
    main()
