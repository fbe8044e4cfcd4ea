"""What signed task messages cost: N no-op tasks built and published by a
client, then drained by one in-process worker, in three modes, each run in
a fresh process, the modes interleaved:

- ``unsigned``: no ``signing=`` on the app (Stem before issue 16);
- ``hmac``: HMAC-SHA256 signing, and a worker with ``require_signed``;
- ``ed25519``: the producer signs with an Ed25519 private key, the worker
  verifies with the public key (``require_signed``).

Prints, per mode, the CPU of the whole process per task for the enqueue
(build + sign + publish, in batches of 500) and for the drain (claim +
verify + run + settle), the cost against ``unsigned``, the wall-clock
rates, and the load average. CPU per task is the robust figure on a shared
machine.

Usage: .venv/bin/python benchmarks/signing.py [--backend memory]
       [--backend sqlite] [--total 5000] [--concurrency 50] [--runs 3]
       [--args-bytes 200]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import stem  # noqa: E402
from benchmarks._harness import fresh_url, load, median  # noqa: E402

MODES = ("unsigned", "hmac", "ed25519")


def signings(mode: str) -> tuple[stem.Signing | None, stem.Signing | None]:
    """(the producer's, the worker's) signing for ``mode``."""
    if mode == "unsigned":
        return None, None
    if mode == "hmac":
        key = stem.SigningKey.hmac("bench", b"a benchmark secret of 32 bytes!!")
        return stem.Signing(keys=[key]), stem.Signing(keys=[key], require_signed=True)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes_raw()
    return (
        stem.Signing(
            keys=[stem.SigningKey.ed25519_private("bench", private.private_bytes_raw())]
        ),
        stem.Signing(
            keys=[stem.SigningKey.ed25519_public("bench", public)],
            require_signed=True,
        ),
    )


async def one_run(
    backend: str, mode: str, total: int, concurrency: int, args_bytes: int
) -> dict[str, float]:
    done = trio.Event()
    count = [0]

    @stem.task("noop")
    async def noop(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        count[0] += 1
        if count[0] == total:
            done.set()

    producer, worker = signings(mode)
    args = {"payload": "x" * args_bytes, "n": 1}
    with fresh_url(backend) as url:
        async with stem.Client.from_url(
            url, app=stem.App([noop], signing=producer)
        ) as p:
            backend_obj = p.backend
            start, cpu = time.perf_counter(), time.process_time()
            for first in range(0, total, 500):
                n = min(500, total - first)
                await p.publish([p.build_envelope("noop", args) for _ in range(n)])
            enqueue_s = time.perf_counter() - start
            enqueue_cpu = time.process_time() - cpu
            async with stem.Client(
                backend=backend_obj, app=stem.App([noop], signing=worker)
            ) as w:
                start, cpu = time.perf_counter(), time.process_time()
                async with w.worker(concurrency=concurrency):
                    await done.wait()
                    drain_s = time.perf_counter() - start
                    drain_cpu = time.process_time() - cpu
                dead = await backend_obj.broker.list_dead("default", limit=1)
                assert not dead, f"a message was refused: {dead[0].error}"
    return {
        "enqueue_rate": total / enqueue_s,
        "enqueue_cpu": enqueue_cpu / total * 1e6,
        "drain_rate": total / drain_s,
        "drain_cpu": drain_cpu / total * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backend", action="append", choices=["memory", "sqlite", "redis"]
    )
    parser.add_argument("--total", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--args-bytes", type=int, default=200)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.child:
        backend, mode = ns.child
        figures = trio.run(
            one_run, backend, mode, ns.total, ns.concurrency, ns.args_bytes
        )
        print(json.dumps(figures))
        return
    print(
        f"{ns.total} no-op tasks with ~{ns.args_bytes} bytes of args, one "
        f"in-process worker (concurrency {ns.concurrency}); median of {ns.runs} "
        f"runs, modes interleaved, each run in a fresh process; load average "
        f"{load()}"
    )
    for backend in ns.backend or ["memory", "sqlite"]:
        samples: dict[str, dict[str, list[float]]] = {m: {} for m in MODES}
        for _ in range(ns.runs):
            for mode in MODES:
                out = subprocess.run(
                    [
                        sys.executable, __file__, "--child", backend, mode,
                        "--total", str(ns.total),
                        "--concurrency", str(ns.concurrency),
                        "--args-bytes", str(ns.args_bytes),
                    ],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                figures = json.loads(out.stdout.strip().splitlines()[-1])
                for key, value in figures.items():
                    samples[mode].setdefault(key, []).append(value)
        base = {k: median(v) for k, v in samples["unsigned"].items()}
        print(f"{backend}: CPU of the whole process per task; wall-clock rates")
        for mode in MODES:
            m = {k: median(v) for k, v in samples[mode].items()}
            print(
                f"  {mode:8} enqueue {m['enqueue_cpu']:5.0f} us CPU/task "
                f"({m['enqueue_cpu'] - base['enqueue_cpu']:+4.0f}), "
                f"{m['enqueue_rate']:>7,.0f}/s; drain {m['drain_cpu']:5.0f} us "
                f"CPU/task ({m['drain_cpu'] - base['drain_cpu']:+4.0f}), "
                f"{m['drain_rate']:>6,.0f}/s"
            )
    print(f"load average after: {load()}")


if __name__ == "__main__":
    main()
