"""Shared plumbing of Stem's benchmark scripts: backend URLs, worker
processes, medians, machine description.

Cross-process backends run the worker in its own process, started as
``python benchmarks/_harness.py worker --url URL --mode MODE ...``; it prints
``READY`` once its worker runs and one JSON line with its figures at the end.

Servers: Redis and Postgres default to the machine's own
(``redis://127.0.0.1:6379/0``, ``postgresql://postgres@127.0.0.1:5432/postgres``),
each run on a fresh namespace/schema that is removed afterwards; override
with ``STEM_BENCH_REDIS`` / ``STEM_BENCH_POSTGRES``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import trio  # noqa: E402

import stem  # noqa: E402

BACKENDS = ("memory", "sqlite", "redis", "postgres")
REDIS = os.environ.get("STEM_BENCH_REDIS", "redis://127.0.0.1:6379/0")
POSTGRES = os.environ.get(
    "STEM_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
APP = "benchmarks.bench_app:app"


# -- backends -----------------------------------------------------------------


@contextlib.contextmanager
def fresh_url(backend: str) -> Iterator[str]:
    """A URL naming an empty store on ``backend``, removed afterwards."""
    tag = uuid.uuid4().hex[:10]
    if backend == "memory":
        yield "memory://"
    elif backend == "sqlite":
        directory = Path(tempfile.mkdtemp(prefix="stem-bench-"))
        try:
            yield f"sqlite:///{directory / 'bench.db'}"
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    elif backend == "redis":
        try:
            glue = "&" if "?" in REDIS else "?"
            yield f"{REDIS}{glue}namespace=bench{tag}"
        finally:
            _drop_redis_namespace(f"bench{tag}")
    elif backend == "postgres":
        try:
            glue = "&" if "?" in POSTGRES else "?"
            yield f"{POSTGRES}{glue}schema=bench_{tag}"
        finally:
            _drop_postgres_schema(f"bench_{tag}")
    else:
        raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")


def _drop_redis_namespace(namespace: str) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(REDIS)
    cli = shutil.which("redis-cli")
    if cli is None:
        return
    base = [cli, "-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 6379)]
    keys = subprocess.run(
        [*base, "--scan", "--pattern", f"*{namespace}*"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    for i in range(0, len(keys), 500):
        subprocess.run(
            [*base, "unlink", *keys[i : i + 500]], capture_output=True, check=False
        )


def _drop_postgres_schema(schema: str) -> None:
    psql = shutil.which("psql")
    if psql is None:
        return
    subprocess.run(
        [psql, POSTGRES, "-q", "-c", f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'],
        capture_output=True,
        check=False,
    )


# -- worker processes ---------------------------------------------------------


def spawn_worker(
    url: str,
    mode: str,
    *,
    app: str = APP,
    concurrency: int = 10,
    count: int = 0,
    prefetch: int = -1,
) -> subprocess.Popen[str]:
    """Start a worker process; returns once it printed READY."""
    proc = subprocess.Popen(
        [
            *(sys.executable, str(Path(__file__)), "worker", "--url", url),
            *("--mode", mode, "--app", app),
            *("--concurrency", str(concurrency), "--count", str(count)),
            *("--prefetch", str(prefetch)),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "READY":
        proc.kill()
        raise RuntimeError(f"worker process did not start: {line!r}")
    return proc


def worker_result(proc: subprocess.Popen[str], timeout: float = 600) -> Any:
    """The JSON line a worker process prints when it is done."""
    out, _ = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"worker process failed with {proc.returncode}")
    return json.loads(out.strip().splitlines()[-1])


async def wait_processed(worker: Any, count: int) -> None:
    """Until ``worker`` has settled ``count`` deliveries."""
    while worker.worker_statistics().processed < count:
        await trio.sleep(0.002)


async def _worker_main(args: argparse.Namespace) -> None:
    from stem._config import load_app

    app = load_app(args.app)
    async with stem.Client.from_url(args.url, app=app) as client:
        if args.mode == "drain":
            # The tasks are queued already; the timed part is the drain only
            # (the backend connections are open before it starts).
            print("READY", flush=True)
            began = time.perf_counter()
            async with client.worker(
                concurrency=args.concurrency, prefetch=args.prefetch
            ) as worker:
                await wait_processed(worker, args.count)
                await client.flush()
                seconds = time.perf_counter() - began
            print(json.dumps({"seconds": seconds}), flush=True)
        elif args.mode == "pickup":
            from benchmarks.bench_app import PICKUPS

            async with client.worker(concurrency=args.concurrency):
                print("READY", flush=True)
                while len(PICKUPS) < args.count:
                    await trio.sleep(0.05)
            print(json.dumps(PICKUPS), flush=True)
        elif args.mode == "share":
            # One of several workers sharing a queue: run until SIGTERM, then
            # print how many deliveries this one settled and when (stem's
            # clock) it settled its last one.
            async with client.worker(
                concurrency=args.concurrency, prefetch=args.prefetch
            ) as worker:
                print("READY", flush=True)
                processed, last = 0, 0.0
                with trio.open_signal_receiver(signal.SIGTERM) as signals:
                    async with trio.open_nursery() as nursery:

                        async def stop_on_signal() -> None:
                            async for _ in signals:
                                nursery.cancel_scope.cancel()

                        nursery.start_soon(stop_on_signal)
                        while True:
                            seen = worker.worker_statistics().processed
                            if seen != processed:
                                processed, last = seen, stem.now()
                            await trio.sleep(0.002)
            print(json.dumps({"processed": processed, "last": last}), flush=True)
        elif args.mode == "serve":
            async with client.worker(concurrency=args.concurrency):
                print("READY", flush=True)
                await trio.sleep_forever()
        else:
            raise SystemExit(f"unknown mode {args.mode!r}")


# -- figures --------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def machine() -> dict[str, str]:
    """Cores, CPU, versions of Python, the libraries and the servers."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
    for dist in ("trio-stem", "trio", "trio-asyncio", "redis", "hiredis", "asyncpg"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            info[dist] = metadata.version(dist)
    info["redis-server"] = _command_version(["redis-server", "--version"])
    info["postgres"] = _command_version(
        ["psql", POSTGRES, "-Atc", "SHOW server_version"]
    )
    return info


def _command_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return "n/a"
    return out.strip().split("\n")[0][:60] or "n/a"


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} (1 min), {five:.2f} (5 min)"


def emit(figures: dict[str, Any], as_json: bool) -> None:
    """Print figures as one JSON line (for run.py) or readable lines."""
    if as_json:
        print(json.dumps(figures))
        return
    for key, value in figures.items():
        print(f"{key}: {value}")


def common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        action="append",
        choices=BACKENDS,
        help="backend(s) to measure (repeatable; default: all four)",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs; the median counts")
    parser.add_argument("--json", action="store_true", help="one JSON line out")


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    worker = sub.add_parser("worker")
    worker.add_argument("--url", required=True)
    worker.add_argument("--mode", required=True)
    worker.add_argument("--app", default=APP)
    worker.add_argument("--concurrency", type=int, default=10)
    worker.add_argument("--count", type=int, default=0)
    worker.add_argument("--prefetch", type=int, default=-1)
    args = parser.parse_args()
    trio.run(_worker_main, args)


if __name__ == "__main__":
    main()
