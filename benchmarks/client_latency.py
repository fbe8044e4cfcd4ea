"""Enqueue latency of the three clients: the Trio ``stem.Client`` (async),
``stem.asyncio.Client`` (a Trio thread under an asyncio loop),
``stem.BlockingClient`` (the same thread, called from plain code), and Trio's
guest mode on the asyncio loop (the alternative to the thread, measured here
only; docs/decisions.md says why it is not what ships).

Each client runs in its own process (importing trio-asyncio changes plain
asyncio for the rest of a process, TRIO-NOTES pitfall 10), the variants
interleaved round by round; each process enqueues ``--count`` no-op tasks
one after another (after a warm-up) and reports p50/p99 per call. The
figures are the medians over ``--runs`` rounds, with the load average.

    python benchmarks/client_latency.py --backend memory --backend redis
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from _harness import (
    ROOT,
    common_args,
    fresh_url,
    load,
    machine,
    median,
    percentile,
)

VARIANTS = ("async", "asyncio", "blocking", "guest")
WARMUP = 50


def _ms(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile(samples, 0.5) * 1000,
        "p99_ms": percentile(samples, 0.99) * 1000,
    }


# -- one variant, in its own process -------------------------------------------


def run_async(url: str, count: int) -> list[float]:
    import trio

    import stem

    samples: list[float] = []

    async def main() -> None:
        async with stem.Client.from_url(url) as client:
            for i in range(WARMUP + count):
                t0 = time.perf_counter()
                await client.enqueue("bench.noop", {"i": i})
                if i >= WARMUP:
                    samples.append(time.perf_counter() - t0)

    trio.run(main)
    return samples


def run_asyncio(url: str, count: int) -> list[float]:
    import stem.asyncio

    samples: list[float] = []

    async def main() -> None:
        async with stem.asyncio.Client(url) as client:
            for i in range(WARMUP + count):
                t0 = time.perf_counter()
                await client.enqueue("bench.noop", {"i": i})
                if i >= WARMUP:
                    samples.append(time.perf_counter() - t0)

    asyncio.run(main())
    return samples


def run_blocking(url: str, count: int) -> list[float]:
    import stem

    samples: list[float] = []
    with stem.BlockingClient(url) as client:
        for i in range(WARMUP + count):
            t0 = time.perf_counter()
            client.enqueue("bench.noop", {"i": i})
            if i >= WARMUP:
                samples.append(time.perf_counter() - t0)
    return samples


def run_guest(url: str, count: int) -> list[float]:
    """The Trio client in a guest run on the asyncio loop: calls are handed
    to Trio with ``run_sync_soon`` and awaited through an asyncio future."""
    import outcome
    import trio

    import stem

    samples: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[tuple[Any, Any, Any]] = loop.create_future()
        finished: asyncio.Future[None] = loop.create_future()
        stop: list[Any] = []

        async def trio_main() -> None:
            async with stem.Client.from_url(url) as client, trio.open_nursery() as n:
                stop.append(trio.Event())
                token = trio.lowlevel.current_trio_token()
                opened.set_result((client, token, n))
                await stop[0].wait()
                n.cancel_scope.cancel()

        def done(result: outcome.Outcome[None]) -> None:
            if isinstance(result, outcome.Error):
                if not opened.done():
                    opened.set_exception(result.error)
                finished.set_exception(result.error)
            else:
                finished.set_result(None)

        trio.lowlevel.start_guest_run(
            trio_main,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=done,
            host_uses_signal_set_wakeup_fd=True,
        )
        client, token, nursery = await opened

        async def call(afn: Callable[[], Awaitable[Any]]) -> Any:
            future: asyncio.Future[Any] = loop.create_future()

            async def job() -> None:
                result = await outcome.acapture(afn)

                def deliver() -> None:
                    if future.done():
                        return
                    if isinstance(result, outcome.Value):
                        future.set_result(result.value)
                    elif isinstance(result, outcome.Error):
                        future.set_exception(result.error)

                loop.call_soon_threadsafe(deliver)

            token.run_sync_soon(nursery.start_soon, job)
            return await future

        for i in range(WARMUP + count):
            t0 = time.perf_counter()
            await call(lambda i=i: client.enqueue("bench.noop", {"i": i}))
            if i >= WARMUP:
                samples.append(time.perf_counter() - t0)
        token.run_sync_soon(stop[0].set)
        await finished

    asyncio.run(main())
    return samples


RUNNERS: dict[str, Callable[[str, int], list[float]]] = {
    "async": run_async,
    "asyncio": run_asyncio,
    "blocking": run_blocking,
    "guest": run_guest,
}


def child(variant: str, url: str, count: int) -> None:
    try:
        samples = RUNNERS[variant](url, count)
    except Exception as exc:  # reported as a figure: the variant cannot run
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"[:200]}))
        return
    print(json.dumps(_ms(samples)))


# -- the driver ---------------------------------------------------------------------


def measure(backend: str, variant: str, count: int) -> dict[str, Any]:
    with fresh_url(backend) as url:
        if backend == "memory":
            url = "memory://"
        proc = subprocess.run(
            [sys.executable, __file__, "--child", variant, url, str(count)],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=ROOT,
        )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    figures: dict[str, Any] = json.loads(lines[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common_args(parser)
    parser.add_argument("--count", type=int, default=500, help="enqueues per run")
    parser.add_argument(
        "--variant", action="append", choices=VARIANTS, help="default: all four"
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        variant, url, count = args.child
        child(variant, url, int(count))
        return
    backends = args.backend or ["memory", "sqlite", "redis"]
    variants = args.variant or list(VARIANTS)
    print(f"load average before: {load()}")
    print("machine:", json.dumps(machine()))
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for round_ in range(args.runs):
        for backend in backends:
            for variant in variants:
                got = measure(backend, variant, args.count)
                runs.setdefault((backend, variant), []).append(got)
        print(f"round {round_ + 1}/{args.runs} done, load {load()}", flush=True)
    figures: dict[str, Any] = {}
    for backend in backends:
        base: float | None = None
        for variant in variants:
            results = runs[(backend, variant)]
            good = [r for r in results if "error" not in r]
            key = f"{backend}/{variant}"
            if not good:
                figures[key] = f"cannot run: {results[0]['error']}"
                continue
            p50 = median([r["p50_ms"] for r in good])
            p99 = median([r["p99_ms"] for r in good])
            if variant == "async":
                base = p50
            ratio = f", {p50 / base:.2f}x async" if base else ""
            figures[key] = f"p50 {p50:.3f} ms, p99 {p99:.3f} ms{ratio}"
    print(f"enqueue latency, {args.count} sequential calls, median of {args.runs}:")
    for key, value in figures.items():
        print(f"  {key:<20} {value}")
    print(f"load average after: {load()}")
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
