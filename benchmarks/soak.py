"""Soak: a steady load on Redis and on Postgres for a long time (default one
hour), recording over time the RSS of the worker processes, the open server
connections and the round-trip latency. Not part of CI nor of ``run.py``.

Each backend runs in its own producer process, with ``--workers`` worker
processes (concurrency 10) beside it. The producer offers ``--rate`` tasks/s
of ``bench.echo`` (sleeps 2 ms, returns its argument) on schedule; each task's
round trip is ``client.enqueue()`` until ``client.wait_for()`` returned the
result (checked against the argument). Every ``--interval`` seconds one CSV
row is written per backend: tasks finished, wrong or missing results, latency
p50/p95/p99/max of that interval, worker RSS (each process and their sum),
producer RSS, and the connections the server sees (``CLIENT LIST`` on Redis,
``pg_stat_activity`` client backends on Postgres, the sampler excluded).

Run it on private servers (nothing else connected, or the connection counts
include the others):

    .venv/bin/python benchmarks/soak.py --minutes 60 --out /tmp/soak \\
        --redis redis://127.0.0.1:PORT/0 \\
        --postgres postgresql://postgres@127.0.0.1:PORT/postgres
    .venv/bin/python benchmarks/soak.py --plot /tmp/soak   # PNG + table again

It writes ``OUT/soak-<backend>.csv``, ``docs/images/soak.png`` (``--png``)
and prints a markdown table (first/middle/last rows and the RSS drift: the
median worker RSS of the last tenth of the run minus that of the second tenth,
after warm-up) for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import stem  # noqa: E402
from benchmarks import bench_app  # noqa: E402
from benchmarks._harness import load, percentile, spawn_worker  # noqa: E402

FIELDS = [
    "backend",
    "elapsed_s",
    "load_1min",
    "done",
    "bad",
    "errors",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
    "worker_rss_mb",
    "worker_rss_each_mb",
    "producer_rss_mb",
    "connections",
]


def rss_mb(pid: int) -> float:
    """Resident set size of process ``pid`` in MiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def connections(backend: str, url: str) -> int:
    """Clients the server sees now, this probe excluded (-1 if unknown)."""
    base = url.split("?", 1)[0]
    if backend == "redis":
        from urllib.parse import urlsplit

        parts = urlsplit(base)
        cmd = ["redis-cli", "-h", parts.hostname or "127.0.0.1"]
        cmd += ["-p", str(parts.port or 6379), "CLIENT", "LIST"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        lines = [x for x in out.stdout.splitlines() if x.startswith("id=")]
        return len(lines) - 1 if lines else -1
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = "
        "'client backend' AND pid <> pg_backend_pid()"
    )
    out = subprocess.run(
        ["psql", base, "-Atc", query], capture_output=True, text=True, timeout=30
    )
    try:
        return int(out.stdout.strip())
    except ValueError:
        return -1


async def produce(
    client: stem.Client,
    rate: float,
    seconds: float,
    samples: list[float],
    bad: list[str],
) -> None:
    """Offer ``rate`` tasks/s for ``seconds``; record round trips (seconds)."""

    async def one(n: int) -> None:
        began = trio.current_time()
        try:
            task_id = await client.enqueue("bench.echo", args={"n": n})
            result = await client.wait_for(task_id, timeout=120)
        except Exception as exc:  # an error of the run, counted, the soak goes on
            bad.append(type(exc).__name__ + ": " + str(exc).rsplit(": ", 1)[-1][:60])
            return
        if result.state != stem.TaskState.SUCCEEDED or result.value != n:
            bad.append(f"wrong result {result.state.value}")
            return
        samples.append(trio.current_time() - began)

    began = trio.current_time()
    async with trio.open_nursery() as nursery:
        n = 0
        while (at := began + n / rate) < began + seconds:
            await trio.sleep_until(at)
            nursery.start_soon(one, n)
            n += 1


def sample(
    backend: str,
    url: str,
    elapsed: float,
    taken: list[float],
    bad: list[str],
    workers: list[subprocess.Popen[str]],
) -> dict[str, Any]:
    """One CSV row: this interval's round trips, RSS and connections now."""
    ms = [s * 1e3 for s in taken] or [0.0]
    each = [rss_mb(w.pid) for w in workers]
    return {
        "backend": backend,
        "elapsed_s": round(elapsed),
        "load_1min": round(os.getloadavg()[0], 2),
        "done": len(taken),
        "bad": len(bad),
        "errors": "; ".join(f"{k} x{n}" for k, n in Counter(bad).most_common(3)),
        "p50_ms": round(percentile(ms, 0.5), 2),
        "p95_ms": round(percentile(ms, 0.95), 2),
        "p99_ms": round(percentile(ms, 0.99), 2),
        "max_ms": round(max(ms), 2),
        "worker_rss_mb": round(sum(each), 1),
        "worker_rss_each_mb": "/".join(f"{x:.1f}" for x in each),
        "producer_rss_mb": round(rss_mb(os.getpid()), 1),
        "connections": connections(backend, url),
    }


async def soak_one(args: argparse.Namespace) -> None:
    """One backend: workers, producer, sampler; rows go to the CSV."""
    backend, url = args.one, args.url
    out = Path(args.out) / f"soak-{backend}.csv"
    workers = [spawn_worker(url, "serve", concurrency=10) for _ in range(args.workers)]
    samples: list[float] = []
    bad: list[str] = []
    seconds = args.minutes * 60
    try:
        with out.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=FIELDS)
            writer.writeheader()
            async with (
                stem.Client.from_url(url, app=bench_app.app) as client,
                trio.open_nursery() as nursery,
            ):
                nursery.start_soon(produce, client, args.rate, seconds, samples, bad)
                began = trio.current_time()
                while trio.current_time() - began < seconds + 1:
                    await trio.sleep(args.interval)
                    taken, samples[:] = list(samples), []
                    bad_now, bad[:] = list(bad), []
                    elapsed = trio.current_time() - began
                    row = await trio.to_thread.run_sync(
                        sample, backend, url, elapsed, taken, bad_now, workers
                    )
                    writer.writerow(row)
                    handle.flush()
                    print(row, flush=True)
                nursery.cancel_scope.cancel()
    finally:
        for proc in workers:
            proc.kill()
            proc.wait()


def read_rows(directory: Path) -> dict[str, list[dict[str, str]]]:
    rows: dict[str, list[dict[str, str]]] = {}
    for path in sorted(directory.glob("soak-*.csv")):
        with path.open() as handle:
            data = list(csv.DictReader(handle))
        if data:
            rows[data[0]["backend"]] = data
    return rows


def plot(directory: Path, png: Path, title: str = "") -> None:
    """Draw RSS, connections and latency over time; print the table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_rows(directory)
    fig, axes = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    colours = {"redis": "tab:red", "postgres": "tab:blue"}
    for backend, data in rows.items():
        colour = colours.get(backend)
        minutes = [int(r["elapsed_s"]) / 60 for r in data]
        rss = [float(r["worker_rss_mb"]) for r in data]
        axes[0].plot(minutes, rss, color=colour, label=backend)
        conns = [int(r["connections"]) for r in data]
        axes[1].plot(minutes, conns, color=colour, label=backend)
        p50 = [max(float(r["p50_ms"]), 0.1) for r in data]
        p99 = [max(float(r["p99_ms"]), 0.1) for r in data]
        axes[2].plot(minutes, p50, color=colour, label=f"{backend} p50")
        axes[2].plot(minutes, p99, "--", color=colour, label=f"{backend} p99")
    axes[0].set_ylabel("worker RSS, sum (MiB)")
    axes[1].set_ylabel("server connections")
    axes[2].set_ylabel("round trip (ms)")
    axes[2].set_yscale("log")
    axes[2].set_xlabel("minutes")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
    fig.suptitle(title or "Stem soak: steady load, 2 worker processes per backend")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)
    print(f"wrote {png}")
    print(table(rows))


def table(rows: dict[str, list[dict[str, str]]]) -> str:
    lines = [
        "| backend | minute | tasks in interval | bad | p50 / p99 / max ms "
        "| worker RSS MiB (each) | connections | load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    summary = []
    for backend, data in rows.items():
        picks = sorted({0, len(data) // 4, len(data) // 2, 3 * len(data) // 4})
        picks.append(len(data) - 1)
        for i in dict.fromkeys(picks):
            r = data[i]
            lines.append(
                f"| {backend} | {int(r['elapsed_s']) / 60:.0f} | {r['done']} "
                f"| {r['bad']} | {r['p50_ms']} / {r['p99_ms']} / {r['max_ms']} "
                f"| {r['worker_rss_mb']} ({r['worker_rss_each_mb']}) "
                f"| {r['connections']} | {r['load_1min']} |"
            )
        tenth = max(1, len(data) // 10)
        early = [float(r["worker_rss_mb"]) for r in data[tenth : 2 * tenth]]
        late = [float(r["worker_rss_mb"]) for r in data[-tenth:]]
        total = sum(int(r["done"]) for r in data)
        bad = sum(int(r["bad"]) for r in data)
        conns = sorted({int(r["connections"]) for r in data})
        drift = percentile(late, 0.5) - percentile(early or late, 0.5)
        summary.append(
            f"- {backend}: {total} tasks over {int(data[-1]['elapsed_s']) / 60:.0f} "
            f"min, {bad} wrong or missing; worker RSS drift (median of last tenth "
            f"minus second tenth) {drift:+.1f} MiB; connections seen {conns}"
        )
    return "\n".join([*lines, "", *summary])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=50.0, help="tasks/s offered")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds a row")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--out", default=str(Path.home() / ".cache/stem-soak"))
    parser.add_argument("--redis", default=os.environ.get("STEM_BENCH_REDIS"))
    parser.add_argument("--postgres", default=os.environ.get("STEM_BENCH_POSTGRES"))
    parser.add_argument("--png", default=str(ROOT / "docs/images/soak.png"))
    parser.add_argument("--plot", metavar="DIR", help="only redraw from DIR's CSVs")
    parser.add_argument("--title", default="", help="title of the PNG")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plot:
        plot(Path(args.plot), Path(args.png), args.title)
        return
    if args.one:
        trio.run(soak_one, args)
        return
    Path(args.out).mkdir(parents=True, exist_ok=True)
    print(f"load before: {load()}", flush=True)
    children = []
    for backend, base in (("redis", args.redis), ("postgres", args.postgres)):
        if not base:
            print(f"{backend}: no URL (--{backend}), skipped", flush=True)
            continue
        tag = f"soak{int(time.time())}"
        sep = "&" if "?" in base else "?"
        option = f"namespace={tag}" if backend == "redis" else f"schema={tag}"
        cmd = [
            sys.executable,
            __file__,
            "--one",
            backend,
            "--url",
            f"{base}{sep}{option}",
        ]
        for flag in ("minutes", "rate", "interval", "workers", "out"):
            cmd += [f"--{flag}", str(getattr(args, flag))]
        children.append(subprocess.Popen(cmd, cwd=ROOT))
    codes = [child.wait() for child in children]
    print(f"load after: {load()}; exit codes {codes}", flush=True)
    plot(Path(args.out), Path(args.png), args.title)


if __name__ == "__main__":
    main()
