"""What OpenTelemetry costs: N no-op tasks through the memory backend with one
worker, without instrumentation (no SDK configured: the default no-op hooks)
and with the OpenTelemetry SDK (spans through a BatchSpanProcessor into an
exporter that drops them, metrics into an in-memory reader), each in a fresh
process. Prints tasks/s per mode (median of --repeat runs) and the overhead.

Usage: .venv/bin/python benchmarks/otel_overhead.py [--total 20000]
       [--concurrency 50] [--batch 500] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import stem  # noqa: E402

MODES = ("none", "sdk-traces", "sdk-traces+metrics")


def build_instrumentation(mode: str) -> Any:
    if mode == "none":
        return None  # the client's default: no-op unless a global SDK is set
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    from stem.otel import OtelInstrumentation

    class DropExporter(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(DropExporter()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return OtelInstrumentation(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider if "metrics" in mode else None,
        metrics="metrics" in mode,
    )


async def one_run(mode: str, total: int, concurrency: int, batch: int) -> float:
    done = trio.Event()
    count = [0]

    @stem.task("noop")
    async def noop(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        count[0] += 1
        if count[0] == total:
            done.set()

    instrumentation = build_instrumentation(mode)
    async with (
        stem.Client("memory://", tasks=[noop], instrumentation=instrumentation) as c,
        c.worker(concurrency=concurrency),
    ):
        kind = type(c.instrumentation).__name__
        assert (mode == "none") == (kind == "Instrumentation"), kind
        start = time.perf_counter()
        for first in range(0, total, batch):
            n = min(batch, total - first)
            await c.publish([c.build_envelope("noop") for _ in range(n)])
        await done.wait()
        await c.flush()
        return total / (time.perf_counter() - start)


def child(mode: str, total: int, concurrency: int, batch: int) -> None:
    rate = trio.run(one_run, mode, total, concurrency, batch)
    print(json.dumps({"mode": mode, "rate": rate}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--total", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.child:
        child(ns.child, ns.total, ns.concurrency, ns.batch)
        return
    print(
        f"{ns.total} no-op tasks, memory backend, one worker "
        f"(concurrency {ns.concurrency}), publish batches of {ns.batch}; "
        f"median of {ns.repeat} runs, each in a fresh process"
    )
    rates: dict[str, float] = {}
    for mode in MODES:
        samples = []
        for _ in range(ns.repeat):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    mode,
                    "--total",
                    str(ns.total),
                    "--concurrency",
                    str(ns.concurrency),
                    "--batch",
                    str(ns.batch),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            samples.append(json.loads(out.stdout.strip().splitlines()[-1])["rate"])
        rates[mode] = statistics.median(samples)
        runs = ", ".join(f"{s:,.0f}" for s in samples)
        print(f"  {mode:20} {rates[mode]:>9,.0f} tasks/s   (runs: {runs})")
    base = rates["none"]
    for mode in MODES[1:]:
        cost = (base - rates[mode]) / base * 100
        per_task = (1 / rates[mode] - 1 / base) * 1e6
        print(f"  overhead of {mode}: {cost:.1f}% ({per_task:.1f} us per task)")


if __name__ == "__main__":
    main()
