"""Stem's defaults against the peers, interleaved: drain and pickup latency.

Each round runs Stem's drain (``throughput.py``, default settings) and pickup
(``latency.py`` at one offered load) on every backend, then each peer's own
harness (``peers/run.py --only NAME``) on the same workloads, one run each; the
table gives the medians over the rounds. Interleaving the rounds keeps a
shared machine's drift in every system's figures alike. Prints the load
average before and after every round and a Markdown table for
docs/benchmarks.md.

Usage: .venv/bin/python benchmarks/versus.py [--rounds 3] [-n 20000]
       [--seconds 5] [--rate 100] [--peer taskiq --peer pgqueuer ...]
       [--out rounds.json]            (each finished round kept)
       .venv/bin/python benchmarks/versus.py --render rounds.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STEM_BACKENDS = ("redis", "postgres", "sqlite")
#: the fastest peers of each backend in the full harness
DEFAULT_PEERS = ("taskiq", "saq", "dramatiq", "celery", "pgqueuer")


def _json(cmd: list[str]) -> dict[str, Any]:
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        print(out.stderr[-2000:], file=sys.stderr)
        return {}
    lines = out.stdout.strip().splitlines()
    found: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    return found


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f}/{five:.1f}"


def one_round(args: argparse.Namespace) -> dict[str, Any]:
    py = sys.executable
    backends = [x for b in STEM_BACKENDS for x in ("--backend", b)]
    got: dict[str, Any] = {"load_before": _load()}
    tp = _json([py, str(HERE / "throughput.py"), "--json", "--runs", "1",
                "-n", str(args.n), *backends])  # fmt: skip
    lat = _json([py, str(HERE / "latency.py"), "--json", "--runs", "1",
                 "--seconds", str(args.seconds), "--rate", str(args.rate),
                 *backends])  # fmt: skip
    for backend in STEM_BACKENDS:
        drain = tp.get("throughput", {}).get(backend, {})
        pick = lat.get("latency", {}).get(f"{backend}@{args.rate}", {})
        got[f"stem/{backend}"] = {
            "backend": backend,
            "drain": drain.get("drain_per_s"),
            "p50": pick.get("p50_ms"),
            "p99": pick.get("p99_ms"),
        }
    for peer in args.peer or DEFAULT_PEERS:
        out = _json([py, str(HERE / "peers" / "run.py"), "--json", "--only", peer,
                     "--runs", "1", "-n", str(args.n), "--seconds", str(args.seconds),
                     "--rates", str(args.rate), "--sleepy", "0"])  # fmt: skip
        fig = out.get("peers", {}).get(peer, {})
        got[peer] = {
            "backend": fig.get("backend"),
            "drain": fig.get("drain_per_s"),
            "p50": fig.get(f"p50_{args.rate}"),
            "p99": fig.get(f"p99_{args.rate}"),
            "error": fig.get("error"),
        }
    got["load_after"] = _load()
    return got


def _median(values: list[Any]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return statistics.median(present) if present else None


def table(rounds: list[dict[str, Any]], rate: int) -> str:
    systems = [k for k in rounds[0] if k not in ("load_before", "load_after")]
    rows = []
    for system in systems:
        cells = [r[system] for r in rounds if system in r]
        backend = next((c["backend"] for c in cells if c.get("backend")), "?")
        rows.append(
            {
                "system": system.split("/")[0],
                "backend": backend,
                "drain": _median([c["drain"] for c in cells]),
                "runs": [c["drain"] for c in cells],
                "p50": _median([c["p50"] for c in cells]),
                "p99": _median([c["p99"] for c in cells]),
            }
        )
    best: dict[str, float] = {}
    for row in rows:
        if row["system"] != "stem" and row["drain"]:
            best[row["backend"]] = max(best.get(row["backend"], 0.0), row["drain"])
    lines = [
        f"| system | backend | drain /s, default settings (runs) | x fastest peer "
        f"| pickup p50 / p99 @{rate}/s |",
        "|---|---|---|---|---|",
    ]
    order = {"redis": 0, "postgres": 1, "sqlite": 2}
    rows.sort(key=lambda r: (order.get(r["backend"], 3), r["system"] != "stem"))
    for row in rows:
        drain = f"{row['drain']:,.0f}" if row["drain"] else "-"
        runs = ", ".join(f"{v:,.0f}" if v else "-" for v in row["runs"])
        ratio = "-"
        if row["system"] == "stem" and row["drain"] and best.get(row["backend"]):
            ratio = f"{row['drain'] / best[row['backend']]:.2f}x"
        p50 = f"{row['p50']:.2f}" if row["p50"] is not None else "-"
        p99 = f"{row['p99']:.2f}" if row["p99"] is not None else "-"
        name = "**Stem**" if row["system"] == "stem" else row["system"]
        lines.append(
            f"| {name} | {row['backend']} | {drain} ({runs}) | {ratio} "
            f"| {p50} / {p99} ms |"
        )
    loads = ", ".join(f"{r['load_before']} -> {r['load_after']}" for r in rounds)
    lines.append("")
    lines.append(f"Load average (1 / 5 min) before -> after each round: {loads}.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("-n", type=int, default=20_000, help="tasks per drain")
    parser.add_argument("--seconds", type=float, default=5.0, help="per pickup run")
    parser.add_argument("--rate", type=int, default=100, help="pickup load, tasks/s")
    parser.add_argument("--peer", action="append", help="peers (default: fastest)")
    parser.add_argument(
        "--out", type=Path, help="keep each finished round in this JSON file"
    )
    parser.add_argument(
        "--render", type=Path, help="print the table of a saved --out file"
    )
    args = parser.parse_args()
    if args.render:
        saved = json.loads(args.render.read_text())
        print(f"Measured {saved['started']} to {saved['ended']}.\n")
        print(table(saved["rounds"], saved["rate"]))
        return
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rounds = []
    for index in range(args.rounds):
        rounds.append(one_round(args))
        print(f"round {index + 1}: {json.dumps(rounds[-1])}", flush=True)
        ended = time.strftime("%H:%M UTC", time.gmtime())
        if args.out:
            args.out.write_text(
                json.dumps(
                    {
                        "started": started,
                        "ended": ended,
                        "rate": args.rate,
                        "rounds": rounds,
                    }
                )
            )
    print(f"\nMeasured {started} to {time.strftime('%H:%M UTC', time.gmtime())}.\n")
    print(table(rounds, args.rate))


if __name__ == "__main__":
    main()
