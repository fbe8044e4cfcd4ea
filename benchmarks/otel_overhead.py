"""What OpenTelemetry costs: N no-op tasks through the memory backend with one
worker, without instrumentation (no SDK configured: the default no-op hooks)
and with the OpenTelemetry SDK (spans through a BatchSpanProcessor into an
exporter that drops them, metrics into an in-memory reader), each in a fresh
process. Prints tasks/s per mode (median of --repeat runs) and the overhead.

Then both sides of the per-task cost, in CPU microseconds (``process_time``,
so a loaded machine inflates it less than wall time), Stem's hooks and the raw
SDK calls alternating, medians of --repeat rounds:

- metrics: Stem's hooks for one task (publish, attempt start, outcome, end)
  against the three raw instrument calls a hand-written integration makes
  (a published and a succeeded counter, a runtime histogram);
- tracing: Stem's publish and run spans with propagation through the
  envelope's headers against the same two spans (same names, kinds and
  attributes), inject, extract, attach and detach made on the SDK directly.

Usage: .venv/bin/python benchmarks/otel_overhead.py [--total 20000]
       [--concurrency 50] [--batch 500] [--repeat 3] [--hooks-only]
"""

from __future__ import annotations

import argparse
import json
import os
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


_HOOK_TASKS = 5_000


def _providers() -> tuple[Any, Any]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class DropExporter(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(DropExporter()))
    return tracer_provider, MeterProvider(metric_readers=[InMemoryMetricReader()])


def stem_hooks(tracing: bool, metrics: bool) -> float:
    """CPU microseconds per task of Stem's instrumentation hooks."""
    from stem._otel import OtelInstrumentation

    tracer_provider, meter_provider = _providers()
    instr = OtelInstrumentation(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        tracing=tracing,
        metrics=metrics,
    )
    envelopes = [stem.Envelope(id=f"t{i}", name="noop") for i in range(_HOOK_TASKS)]
    result = stem.TaskResult(task_id="t", state=stem.TaskState.SUCCEEDED)
    began = time.process_time()
    for env in envelopes:
        stored = instr.on_publish([env])
        instr.published(stored)
        with instr.attempt(stored[0], worker_id="w") as scope:
            scope.outcome(result, runtime=0.001)
    return (time.process_time() - began) / _HOOK_TASKS * 1e6


def raw_sdk(tracing: bool, metrics: bool) -> float:
    """CPU microseconds per task of the same work made on the SDK directly."""
    from opentelemetry import context, trace
    from opentelemetry.trace import SpanKind
    from opentelemetry.trace.propagation.tracecontext import (
        TraceContextTextMapPropagator,
    )

    tracer_provider, meter_provider = _providers()
    propagator = TraceContextTextMapPropagator()
    tracer = tracer_provider.get_tracer("raw")
    meter = meter_provider.get_meter("raw")
    published = meter.create_counter("published")
    succeeded = meter.create_counter("succeeded")
    runtime = meter.create_histogram("runtime")
    labels = {"stem.task.name": "noop", "messaging.destination.name": "default"}
    ids = [f"t{i}" for i in range(_HOOK_TASKS)]
    began = time.process_time()
    for task_id in ids:
        if tracing:
            common = {
                "messaging.system": "stem",
                "messaging.destination.name": "default",
                "messaging.message.id": task_id,
                "stem.task.id": task_id,
                "stem.task.name": "noop",
                "stem.task.attempt": 1,
                "stem.queue": "default",
            }
            span = tracer.start_span(
                "stem.publish",
                kind=SpanKind.PRODUCER,
                attributes={
                    **common,
                    "messaging.operation": "publish",
                    "messaging.operation.type": "publish",
                },
            )
            headers: dict[str, str] = {}
            propagator.inject(headers, context=trace.set_span_in_context(span))
            span.end()
            run = tracer.start_span(
                "stem.run noop",
                context=propagator.extract(headers),
                kind=SpanKind.CONSUMER,
                attributes={
                    **common,
                    "messaging.operation": "process",
                    "messaging.operation.type": "process",
                    "stem.worker.id": "w",
                },
            )
            token = context.attach(trace.set_span_in_context(run))
            run.set_attribute("stem.task.state", "succeeded")
            run.set_attribute("stem.task.runtime", 0.001)
            context.detach(token)
            run.end()
        if metrics:
            published.add(1, labels)
            succeeded.add(1, labels)
            runtime.record(0.001, labels)
    return (time.process_time() - began) / _HOOK_TASKS * 1e6


def compare_hooks(repeat: int) -> None:
    print(
        f"per-task CPU cost, {_HOOK_TASKS} tasks a round, Stem's hooks and the raw "
        f"SDK alternating, median of {repeat} rounds (load average "
        f"{os.getloadavg()[0]:.2f}):"
    )
    for label, tracing, metrics in (
        ("metrics", False, True),
        ("tracing", True, False),
    ):
        ours, raw = [], []
        for _ in range(repeat):
            ours.append(stem_hooks(tracing, metrics))
            raw.append(raw_sdk(tracing, metrics))
        a, b = statistics.median(ours), statistics.median(raw)
        print(f"  {label:8} Stem {a:7.1f} us   raw SDK {b:7.1f} us   ratio {a / b:.2f}")


def child(mode: str, total: int, concurrency: int, batch: int) -> None:
    rate = trio.run(one_run, mode, total, concurrency, batch)
    print(json.dumps({"mode": mode, "rate": rate}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--total", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--hooks-only", action="store_true")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.child:
        child(ns.child, ns.total, ns.concurrency, ns.batch)
        return
    if ns.hooks_only:
        compare_hooks(max(ns.repeat, 5))
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
    compare_hooks(max(ns.repeat, 5))


if __name__ == "__main__":
    main()
