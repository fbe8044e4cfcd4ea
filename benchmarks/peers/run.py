"""Run the peer benchmarks: each peer in its own virtualenv (created on first
use under ~/.cache/stem-bench/venvs; peers are never dependencies of
trio-stem) and its own processes, on the same Redis and Postgres as Stem.

Usage: .venv/bin/python benchmarks/peers/run.py [--only arq] [--json]
       [-n 20000] [--runs 3] [--seconds 5]

Redis: database 13 of ``$PEER_REDIS`` (default redis://127.0.0.1:6379/13),
flushed between runs. Postgres: database ``peers`` of ``$PEER_POSTGRES``
(created when missing).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VENVS = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    / "stem-bench"
    / "venvs"
)

#: name -> (virtualenv, pip requirements, script, extra environment, backend)
PEERS: dict[str, tuple[str, list[str], str, dict[str, str], str]] = {
    "arq": ("arq", ["arq", "hiredis"], "peer_arq.py", {}, "redis"),
    "dramatiq": (
        "dramatiq",
        ["dramatiq[redis]", "hiredis"],
        "peer_dramatiq.py",
        {},
        "redis",
    ),
    "taskiq": (
        "taskiq",
        ["taskiq", "taskiq-redis", "hiredis"],
        "peer_taskiq.py",
        {},
        "redis",
    ),
    "saq": ("saq", ["saq[redis,postgres]", "hiredis"], "peer_saq.py", {}, "redis"),
    "celery": ("celery", ["celery[redis]", "hiredis"], "peer_celery.py", {}, "redis"),
    "streaq": ("streaq", ["streaq", "hiredis"], "peer_streaq.py", {}, "redis"),
    "pgqueuer": (
        "pgqueuer",
        ["pgqueuer", "asyncpg"],
        "peer_pgqueuer.py",
        {},
        "postgres",
    ),
    "saq (postgres)": (
        "saq",
        ["saq[redis,postgres]", "hiredis"],
        "peer_saq.py",
        {"PEER_SAQ_BACKEND": "postgres"},
        "postgres",
    ),
}


def venv(name: str, requirements: list[str]) -> Path:
    """The peer's virtualenv, created and filled on first use."""
    path = VENVS / name
    python = path / "bin" / "python"
    marker = path / ".stem-bench-ready"
    if not marker.exists():
        VENVS.mkdir(parents=True, exist_ok=True)
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(path)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *requirements], check=True
        )
        marker.write_text(" ".join(requirements))
    return python


def ensure_postgres_db() -> None:
    url = os.environ.get("PEER_POSTGRES", "postgresql://postgres@127.0.0.1:5432/peers")
    base, _, db = url.rpartition("/")
    exists = subprocess.run(
        [
            "psql",
            f"{base}/postgres",
            "-Atc",
            f"SELECT 1 FROM pg_database WHERE datname = '{db}'",
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if exists != "1":
        subprocess.run(
            ["psql", f"{base}/postgres", "-qc", f'CREATE DATABASE "{db}"'], check=False
        )


def run_peer(name: str, args: argparse.Namespace) -> dict[str, Any]:
    env_name, requirements, script, env, backend = PEERS[name]
    if not (HERE / script).exists():
        return {"backend": backend, "error": "no harness script yet"}
    try:
        python = venv(env_name, requirements)
    except subprocess.CalledProcessError as exc:
        return {"backend": backend, "error": f"does not install: {exc}"}
    cmd = [str(python), str(HERE / script), "-n", str(args.n), "--runs", str(args.runs)]
    cmd += ["--seconds", str(args.seconds)]
    cmd += ["--rates", args.rates, "--sleepy", str(args.sleepy)]
    print(f"$ {' '.join(cmd)}", file=sys.stderr, flush=True)
    proc = subprocess.run(
        cmd,
        cwd=HERE,
        env={**os.environ, **env, "PYTHONPATH": str(HERE)},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"backend": backend, "error": f"failed: {last[:200]}"}
    figures: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return next(iter(figures.values()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", choices=sorted(PEERS))
    parser.add_argument("-n", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rates", default="100,500", help="pickup loads, tasks/s")
    parser.add_argument("--sleepy", type=int, default=1000, help="0: skip")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    ensure_postgres_db()
    results: dict[str, Any] = {}
    for name in args.only or PEERS:
        results[name] = run_peer(name, args)
        if not args.json:
            print(name, json.dumps(results[name]), flush=True)
    if args.json:
        print(json.dumps({"peers": results}))


if __name__ == "__main__":
    main()
