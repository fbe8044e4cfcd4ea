"""What every peer benchmark shares (standard library only: this runs inside
each peer's own virtualenv, never with trio-stem installed).

Task side: the peer's tasks call :data:`RECORDER`'s ``hit()``; the worker
process writes ``$BENCH_OUT`` (JSON: first start, last hit, latencies) when
``$BENCH_EXPECT`` tasks have run. Driver side: :func:`main` runs the same
workloads as Stem's scripts (throughput, pickup latency at 100 and 500/s,
sleepy tasks) against a peer described by a :class:`Peer`, and prints one
JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


class Recorder:
    """Counts task runs in a worker process (thread-safe)."""

    def __init__(self) -> None:
        self.expect = int(os.environ.get("BENCH_EXPECT", "0"))
        self.out = os.environ.get("BENCH_OUT")
        self.count = 0
        self.first: float | None = None
        self.latencies: list[float] = []
        self.lock = threading.Lock()

    def hit(self, *, started: float | None = None, sent: float | None = None) -> None:
        at = time.time()
        with self.lock:
            begin = started if started is not None else at
            if self.first is None or begin < self.first:
                self.first = begin
            if sent is not None:
                self.latencies.append((started or at) - sent)
            self.count += 1
            if self.count == self.expect and self.out:
                tmp = f"{self.out}.tmp"
                with open(tmp, "w") as fh:
                    json.dump(
                        {"first": self.first, "last": at, "lat": self.latencies}, fh
                    )
                os.replace(tmp, self.out)


RECORDER = Recorder()


@dataclass
class Peer:
    """How the driver talks to one system."""

    name: str
    backend: str  # "redis" or "postgres"
    #: argv of one worker process at the given concurrency
    worker_argv: Callable[[int], list[str]]
    #: enqueue [(task, kwargs)] as fast as the system allows; returns when done
    bulk: Callable[[list[tuple[str, dict[str, Any]]]], None]
    #: enqueue one task (for paced offered load)
    one: Callable[[str, dict[str, Any]], None]
    #: forget everything queued (between runs)
    reset: Callable[[], None]
    notes: str = ""
    env: dict[str, str] | None = None


def _worker(
    peer: Peer, concurrency: int, expect: int, out: Path
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **(peer.env or {}),
        "BENCH_EXPECT": str(expect),
        "BENCH_OUT": str(out),
        "PYTHONPATH": str(HERE),
    }
    log = open(out.with_suffix(".log"), "wb")  # noqa: SIM115
    return subprocess.Popen(
        peer.worker_argv(concurrency),
        cwd=HERE,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait(proc: subprocess.Popen[bytes], out: Path, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    try:
        while not out.exists():
            if proc.poll() is not None:
                log = out.with_suffix(".log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"worker exited with {proc.returncode}:\n{log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no result within {timeout} s")
            time.sleep(0.01)
        data: dict[str, Any] = json.loads(out.read_text())
        return data
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def throughput(peer: Peer, n: int, concurrency: int, tmp: Path) -> tuple[float, float]:
    peer.reset()
    jobs = [("noop", {}) for _ in range(n)]
    began = time.perf_counter()
    peer.bulk(jobs)
    enqueue = time.perf_counter() - began
    out = tmp / f"tp-{time.monotonic_ns()}.json"
    data = _wait(_worker(peer, concurrency, n, out), out, 600)
    return n / enqueue, n / (data["last"] - data["first"])


def latency(peer: Peer, rate: int, seconds: float, tmp: Path) -> tuple[float, float]:
    peer.reset()
    count = int(rate * seconds)
    out = tmp / f"lat-{time.monotonic_ns()}.json"
    proc = _worker(peer, 10, count, out)
    time.sleep(3.0)  # worker start-up (imports, connections)
    began = time.monotonic()
    for i in range(count):
        pause = began + i / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        peer.one("pickup", {"sent": time.time()})
    data = _wait(proc, out, 120)
    kept = data["lat"][len(data["lat"]) // 20 :]
    return _pct(kept, 0.5) * 1e3, _pct(kept, 0.99) * 1e3


def sleepy(peer: Peer, n: int, tmp: Path) -> float:
    peer.reset()
    rng = random.Random(1234)
    peer.bulk([("sleep", {"ms": rng.uniform(10, 50)}) for _ in range(n)])
    out = tmp / f"sl-{time.monotonic_ns()}.json"
    data = _wait(_worker(peer, 50, n, out), out, 300)
    return float(data["last"] - data["first"])


def main(peer: Peer) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--sleepy", type=int, default=1000, help="0: skip")
    parser.add_argument("--rates", default="100,500", help="pickup loads, tasks/s")
    args = parser.parse_args()
    med = statistics.median
    with tempfile.TemporaryDirectory(prefix=f"peer-{peer.name}-") as name:
        tmp = Path(name)
        tp = [throughput(peer, args.n, 10, tmp) for _ in range(args.runs)]
        figures: dict[str, Any] = {
            "backend": peer.backend,
            "enqueue_per_s": round(med([r[0] for r in tp])),
            "drain_per_s": round(med([r[1] for r in tp])),
            "drain_runs": [round(r[1]) for r in tp],
            "notes": peer.notes,
        }
        for rate in [int(r) for r in args.rates.split(",") if r]:
            lat = [latency(peer, rate, args.seconds, tmp) for _ in range(args.runs)]
            figures[f"p50_{rate}"] = round(med([r[0] for r in lat]), 2)
            figures[f"p99_{rate}"] = round(med([r[1] for r in lat]), 2)
        if args.sleepy > 0:
            figures["sleepy_s"] = round(
                med([sleepy(peer, args.sleepy, tmp) for _ in range(args.runs)]), 3
            )
        peer.reset()
    print(json.dumps({peer.name: figures}), flush=True)


def redis_url() -> str:
    return os.environ.get("PEER_REDIS", "redis://127.0.0.1:6379/13")


def postgres_url() -> str:
    return os.environ.get("PEER_POSTGRES", "postgresql://postgres@127.0.0.1:5432/peers")


def python() -> str:
    return sys.executable
