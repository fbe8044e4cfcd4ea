"""Run every Stem benchmark (and, with --peers, the peer harness), print the
table and write it to docs/benchmarks.md.

Usage: .venv/bin/python benchmarks/run.py [--runs 3] [--peers] [--quick]

Each script runs in its own process (``--json``); figures are medians of
``--runs`` runs. ``--quick`` is a smoke run (1 run, 2,000 tasks, 2 s of
latency) and does not write the docs page unless ``--write`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._harness import ROOT, load, machine

DOC = ROOT / "docs" / "benchmarks.md"
HERE = Path(__file__).resolve().parent
#: everything after this line of docs/benchmarks.md is hand-written and kept
NOTES_MARKER = "<!-- notes: hand-written, kept by benchmarks/run.py -->"
#: raw figures of the last run (and the peers' virtualenvs) live here
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "stem-bench"


def _script(name: str, *args: str) -> dict[str, Any]:
    cmd = [sys.executable, str(HERE / name), "--json", *args]
    print("$", " ".join(cmd[1:]), flush=True)
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{name} failed:\n{out.stderr[-4000:]}")
    figures: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def collect(runs: int, quick: bool, peers: bool) -> dict[str, Any]:
    r = ["--runs", str(runs)]
    data: dict[str, Any] = {
        "load_before": load(),
        "machine": machine(),
        "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    data.update(_script("throughput.py", *r, *(["-n", "2000"] if quick else [])))
    data.update(_script("latency.py", *r, *(["--seconds", "2"] if quick else [])))
    data.update(_script("sleepy.py", *r))
    data.update(_script("recovery.py", *r))
    if peers:
        peer_args = [*r, *(["-n", "2000", "--seconds", "2"] if quick else [])]
        data.update(_script("peers/run.py", *peer_args))
    data["load_after"] = load()
    return data


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def _k(value: float) -> str:
    return f"{value / 1000:.1f}k" if value >= 1000 else f"{value:.0f}"


def render(data: dict[str, Any], command: str) -> str:
    tp, lat, sl, rec = (
        data["throughput"],
        data["latency"],
        data["sleepy"],
        data["recovery"],
    )
    lines = [
        "# Benchmarks",
        "",
        "Measured by `benchmarks/run.py` (see benchmarks/README.md); every figure is",
        "the median of the runs. Speed is never asserted in tests: rerun the command",
        "to reproduce; figures on a busy machine move by 10-30%.",
        "",
        f"Command: `{command}`, on {data.get('measured', 'an earlier run')}.",
        f"Load average before: {data['load_before']}; after: {data['load_after']}"
        " (2 cores shared with other work).",
        "",
        "## Stem",
        "",
        _row(
            "backend",
            "enqueue /s",
            "drain /s (1 worker, concurrency 10)",
            "pickup p50 / p99 @100/s",
            "pickup p50 / p99 @500/s",
            "1,000 sleepy tasks @50",
            "recovery after SIGKILL",
        ),
        "|---|---|---|---|---|---|---|",
    ]
    for backend, fig in tp.items():
        l100 = lat.get(f"{backend}@100", {})
        l500 = lat.get(f"{backend}@500", {})
        sleepy = sl.get(backend)
        recovery = rec.get(backend)
        lines.append(
            f"| {backend} | {_k(fig['enqueue_per_s'])} | {_k(fig['drain_per_s'])} | "
            f"{l100.get('p50_ms', '-')} / {l100.get('p99_ms', '-')} ms | "
            f"{l500.get('p50_ms', '-')} / {l500.get('p99_ms', '-')} ms | "
            + (
                f"{sleepy['seconds']:.2f} s ({sleepy['efficiency']:.0%} of ideal) | "
                if sleepy
                else "- | "
            )
            + (
                f"{recovery['seconds']:.1f} s (lease {recovery['lease_s']:g} s) |"
                if recovery
                else "n/a (one process) |"
            )
        )
    lines += [
        "",
        "Targets (issues 2, 4, 5, 6, 11): memory >= 30k/s drain; SQLite, Redis,",
        "Postgres >= 10k/s drain; pickup p50 <= 1 ms and p99 <= 2 ms on Redis,",
        "p99 <= 3 ms on Postgres, at 100 tasks/s.",
        "",
        "- enqueue: `client.enqueue()` from 100 concurrent Trio tasks, one process.",
        "- drain: 20,000 queued no-op tasks, one worker process at concurrency 10,",
        "  from its start until every result is stored and acked.",
        "- pickup: start minus `enqueued_at` (stem's clock), producer and worker in",
        "  separate processes (one process for memory); first 5% dropped.",
        "- sleepy: 1,000 tasks sleeping 10-50 ms, concurrency 50; ideal = total",
        "  sleep / 50.",
        "- recovery: 10 running tasks (0.5 s, visibility_timeout 5 s) on a worker",
        "  killed with SIGKILL, until another worker process has finished them.",
    ]
    peers = data.get("peers")
    if peers:
        lines += _render_peers(
            peers, tp, lat, sl, data.get("peers_measured", "with Stem")
        )
    lines += ["", "## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in data["machine"].items()]
    return "\n".join(lines) + "\n"


def _render_peers(
    peers: dict[str, Any],
    tp: dict[str, Any],
    lat: dict[str, Any],
    sl: dict[str, Any],
    peers_measured: str,
) -> list[str]:
    lines = [
        "",
        "## Side by side with peers",
        "",
        "Same workloads, same Redis/Postgres, each peer in its own virtualenv and",
        f"process (benchmarks/peers/), measured {peers_measured}.",
        "Ratio = peer / Stem on the same backend (for",
        "drain rates higher is better, so a ratio below 1 means Stem is faster).",
        "",
        _row(
            "system",
            "backend",
            "enqueue /s",
            "drain /s (c=10)",
            "drain ratio to Stem",
            "pickup p50 / p99 @100/s",
            "pickup p50 / p99 @500/s",
            "1,000 sleepy @50",
            "notes",
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for backend in ("redis", "postgres"):
        if backend not in tp:
            continue
        stem_drain = tp[backend]["drain_per_s"]
        s100 = lat.get(f"{backend}@100", {})
        s500 = lat.get(f"{backend}@500", {})
        lines.append(
            f"| **Stem** | {backend} | {_k(tp[backend]['enqueue_per_s'])} | "
            f"{_k(stem_drain)} | 1.00 | {s100.get('p50_ms', '-')} / "
            f"{s100.get('p99_ms', '-')} ms | {s500.get('p50_ms', '-')} / "
            f"{s500.get('p99_ms', '-')} ms | "
            f"{sl[backend]['seconds']:.2f} s | one worker process |"
        )
        for name, fig in sorted(peers.items()):
            if fig.get("backend") != backend:
                continue
            if "error" in fig:
                lines.append(
                    f"| {name} | {backend} | - | - | - | - | - | - | {fig['error']} |"
                )
                continue
            ratio = fig["drain_per_s"] / stem_drain if stem_drain else 0
            sleepy = fig.get("sleepy_s")
            lines.append(
                f"| {name} | {backend} | {_k(fig['enqueue_per_s'])} | "
                f"{_k(fig['drain_per_s'])} | {ratio:.2f} | "
                f"{fig.get('p50_100', '-')} / {fig.get('p99_100', '-')} ms | "
                f"{fig.get('p50_500', '-')} / {fig.get('p99_500', '-')} ms | "
                f"{f'{sleepy:.2f} s' if sleepy else '-'} | {fig.get('notes', '')} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--peers", action="store_true", help="also run the peers")
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--write", action="store_true", help="write with --quick")
    parser.add_argument(
        "--render",
        action="store_true",
        help="only rewrite the page from the last run's figures",
    )
    parser.add_argument(
        "--peer",
        action="append",
        help="rerun only this peer (repeatable), keeping the rest of the last run",
    )
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    command = "python benchmarks/run.py" + (" --peers" if args.peers else "")
    if args.render:
        data = json.loads((CACHE / "last-run.json").read_text())
        args.peers = "peers" in data
    elif args.peer:
        # Rerun only these peers; everything else comes from the last run.
        data = json.loads((CACHE / "last-run.json").read_text())
        peer_args = ["--runs", str(runs)]
        for name in args.peer:
            peer_args += ["--only", name]
        rerun = _script("peers/run.py", *peer_args)["peers"]
        data.setdefault("peers", {}).update(rerun)
        args.peers = True
    else:
        data = collect(runs, args.quick, args.peers)
        if args.peers:
            data["peers_measured"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        elif not args.quick and (CACHE / "last-run.json").exists():
            # Keep the peers of the last --peers run (they do not change with
            # Stem's code); the page says when they were measured.
            last = json.loads((CACHE / "last-run.json").read_text())
            if "peers" in last:
                data["peers"] = last["peers"]
                data["peers_measured"] = last.get("peers_measured", "earlier")
                args.peers = True
    if args.runs != 3 and not args.quick:
        command += f" --runs {args.runs}"
    text = render(data, command)
    print(text)
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / "last-run.json").write_text(json.dumps(data, indent=1))
    if not args.quick or args.write:
        kept = ""
        if DOC.exists() and NOTES_MARKER in DOC.read_text():
            kept = DOC.read_text().split(NOTES_MARKER, 1)[1]
        DOC.write_text(f"{text}\n{NOTES_MARKER}{kept}")
        print(f"wrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
