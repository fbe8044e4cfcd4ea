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
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import attrs  # noqa: E402
import trio  # noqa: E402

import stem  # noqa: E402

APP = "benchmarks.bench_app:app"
BACKENDS = ("redis", "redis-cluster", "postgres")


# -- servers ------------------------------------------------------------------


@contextmanager
def servers(backends: Sequence[str]) -> Iterator[dict[str, tuple[str, Pids]]]:
    """Start the servers ``backends`` need; by backend, the base URL and a
    function listing the server's processes (for their CPU time)."""
    from tests._cluster import RedisClusterServers
    from tests.fixtures_postgres import _start_cluster
    from tests.fixtures_redis import RedisServer

    found: dict[str, tuple[str, Pids]] = {}
    with ExitStack() as stack:
        scratch = Path(tempfile.mkdtemp(prefix="stem-scale-"))
        stack.callback(shutil.rmtree, scratch, True)
        if "redis" in backends:
            single = RedisServer(scratch / "redis")
            (scratch / "redis").mkdir()
            single.start()
            stack.callback(single.stop)
            assert single.process is not None
            pid = single.process.pid
            found["redis"] = (f"redis://127.0.0.1:{single.port}/0", lambda: [pid])
        if "redis-cluster" in backends:
            cluster = RedisClusterServers(scratch / "cluster")
            stack.callback(cluster.stop)
            cluster.start()
            nodes = [proc.pid for proc in cluster.processes.values()]
            found["redis-cluster"] = (cluster.url, lambda: nodes)
        if "postgres" in backends:
            pg = _start_cluster()
            stack.callback(pg.destroy)
            pidfile = pg.datadir / "postmaster.pid"
            main = int(pidfile.read_text().split()[0])
            found["postgres"] = (pg.url, lambda: [main, *_children(main)])
        yield found


Pids = Callable[[], list[int]]


def _children(parent: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            out.append(int(stat.parent.name))
    return out


def _cpu(pids: list[int]) -> float:
    """User + system CPU seconds of the processes ``pids`` so far."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


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
        cpu = time.process_time()
        async with client.worker(concurrency=concurrency, queues=queues) as worker:
            await trio.to_thread.run_sync(sys.stdin.readline)
            processed = worker.worker_statistics().processed
            cpu = time.process_time() - cpu
    print(json.dumps({"processed": processed, "cpu": cpu}), flush=True)


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


@attrs.frozen
class Run:
    """One drain: wall seconds, tasks per worker process, and CPU seconds
    of the worker processes and of the server processes meanwhile."""

    seconds: float
    counts: list[int]
    worker_cpu: float
    server_cpu: float


async def _drain(
    url: str,
    pids: Pids,
    processes: int,
    tasks: int,
    queues: list[str],
    concurrency: int,
) -> Run:
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
            server_before = _cpu(pids())
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
            server_cpu = _cpu(pids()) - server_before
            counts, worker_cpu = [], 0.0
            for proc in workers:
                out, _ = await trio.to_thread.run_sync(
                    lambda p=proc: p.communicate("stop\n", timeout=120)
                )
                figures = json.loads(out.strip().splitlines()[-1])
                counts.append(figures["processed"])
                worker_cpu += figures["cpu"]
        finally:
            for proc in workers:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    return Run(seconds, counts, worker_cpu, server_cpu)


def drain(
    base: str,
    pids: Pids,
    processes: int,
    *,
    tasks: int,
    queues: list[str],
    concurrency: int,
) -> Run:
    """One drain of ``tasks`` by ``processes`` worker processes."""
    return trio.run(_drain, fresh(base), pids, processes, tasks, queues, concurrency)


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
    runs: dict[tuple[str, int], list[Run]] = {}
    with servers(backends) as found:
        for round_ in range(args.runs):
            for n in counts:
                for backend in backends:
                    url, pids = found[backend]
                    run = drain(
                        url,
                        pids,
                        n,
                        tasks=args.tasks,
                        queues=queues,
                        concurrency=args.concurrency,
                    )
                    runs.setdefault((backend, n), []).append(run)
                    print(
                        f"round {round_ + 1} {backend} x{n}: "
                        f"{args.tasks / run.seconds:,.0f} tasks/s, CPU per task "
                        f"{1e6 * run.worker_cpu / args.tasks:,.0f} us workers + "
                        f"{1e6 * run.server_cpu / args.tasks:,.0f} us server "
                        f"(per process {run.counts}) load {_load()}",
                        flush=True,
                    )
    print(f"load after: {_load()}")
    print(
        f"\n{args.tasks} no-op tasks over {args.queues} queues, concurrency "
        f"{args.concurrency} per process; medians of {args.runs} rounds"
    )
    print(
        "| backend | "
        + " | ".join(f"{n} process{'es' if n > 1 else ''}" for n in counts)
        + " | CPU per task, workers + server (1 process) |"
    )
    print("|---|" + "---|" * (len(counts) + 1))
    table: dict[str, Any] = {}
    for backend in backends:
        rates = [
            args.tasks / statistics.median(r.seconds for r in runs[(backend, n)])
            for n in counts
        ]
        first = runs[(backend, counts[0])]
        worker_us = 1e6 * statistics.median(r.worker_cpu for r in first) / args.tasks
        server_us = 1e6 * statistics.median(r.server_cpu for r in first) / args.tasks
        table[backend] = {
            "rates": rates,
            "worker_us": worker_us,
            "server_us": server_us,
        }
        cells = [f"{r:,.0f}/s ({r / rates[0]:.2f}x)" for r in rates]
        cpu = f"{worker_us:,.0f} + {server_us:,.0f} us"
        print(f"| {backend} | " + " | ".join(cells) + f" | {cpu} |")
    if args.json:
        print(json.dumps({"processes": counts, "table": table, "load": _load()}))


if __name__ == "__main__":
    main()
