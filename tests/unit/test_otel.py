"""OpenTelemetry: publish/run spans sharing a trace through retries and
follow-ups, errors on spans, metric values after a known workload, and
automatic activation only when an SDK provider is set globally."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode

import stem
from stem._instrument import NOOP, default_instrumentation
from stem._otel import OtelInstrumentation, trace_headers

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def spans() -> tuple[InMemorySpanExporter, OtelInstrumentation]:
    """An instrumentation on a private TracerProvider (the global one is never
    touched) exporting to memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter, OtelInstrumentation(tracer_provider=provider, metrics=False)


def _by_name(finished: Any, name: str) -> list[ReadableSpan]:
    return [s for s in finished if s.name == name]


@stem.task("noop")
async def noop(ctx: stem.TaskContext, args: dict[str, Any]) -> dict[str, str]:
    return dict(ctx.headers)


async def test_enqueue_and_run_share_one_trace(
    spans: tuple[InMemorySpanExporter, OtelInstrumentation], autojump_clock: Any
) -> None:
    """Enqueue + run gives a PRODUCER ``stem.publish`` span and a CONSUMER
    ``stem.run noop`` span in one trace, the consumer a child of the producer,
    with the messaging attributes; the task sees the traceparent header."""
    exporter, instr = spans
    async with (
        stem.Client("memory://", tasks=[noop], instrumentation=instr) as client,
        client.worker(),
    ):
        task_id = await client.enqueue("noop", queue="default", headers={"k": "v"})
        result = await client.wait_for(task_id, timeout=10)
    finished = exporter.get_finished_spans()
    (producer,) = _by_name(finished, "stem.publish")
    (consumer,) = _by_name(finished, "stem.run noop")
    assert producer.kind is SpanKind.PRODUCER
    assert consumer.kind is SpanKind.CONSUMER
    assert producer.context is not None and consumer.context is not None
    assert consumer.context.trace_id == producer.context.trace_id
    assert consumer.parent is not None
    assert consumer.parent.span_id == producer.context.span_id
    for span, operation in ((producer, "publish"), (consumer, "process")):
        attributes = dict(span.attributes or {})
        assert attributes["messaging.system"] == "stem"
        assert attributes["messaging.destination.name"] == "default"
        assert attributes["messaging.message.id"] == task_id
        assert attributes["messaging.operation"] == operation
        assert attributes["stem.task.id"] == task_id
        assert attributes["stem.task.attempt"] == 1
        assert attributes["stem.queue"] == "default"
    assert dict(consumer.attributes or {})["stem.task.state"] == "succeeded"
    assert consumer.status.status_code is StatusCode.UNSET
    headers = result.value
    assert headers["k"] == "v"
    assert headers["traceparent"].split("-")[1] == f"{producer.context.trace_id:032x}"


async def test_retries_stay_in_the_producers_trace_with_errors_recorded(
    spans: tuple[InMemorySpanExporter, OtelInstrumentation], autojump_clock: Any
) -> None:
    """A task failing twice then succeeding gives three CONSUMER spans in the
    producer's trace; the failed attempts carry status ERROR and an exception
    event with the error's type and message."""
    exporter, instr = spans
    calls: list[int] = []

    @stem.task("flaky", max_retries=3)
    async def flaky(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
        calls.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ValueError(f"boom {ctx.attempt}")
        return "ok"

    async with (
        stem.Client("memory://", tasks=[flaky], instrumentation=instr) as client,
        client.worker(),
    ):
        result = await client.wait_for(await client.enqueue("flaky"), timeout=3600)
    assert result.state is stem.TaskState.SUCCEEDED
    finished = exporter.get_finished_spans()
    (producer,) = _by_name(finished, "stem.publish")
    runs = sorted(
        _by_name(finished, "stem.run flaky"),
        key=lambda s: dict(s.attributes or {})["stem.task.attempt"],
    )
    assert [dict(s.attributes or {})["stem.task.attempt"] for s in runs] == [1, 2, 3]
    assert producer.context is not None
    assert {s.context.trace_id for s in runs if s.context} == {
        producer.context.trace_id
    }
    for attempt, span in enumerate(runs[:2], start=1):
        assert span.status.status_code is StatusCode.ERROR
        assert dict(span.attributes or {})["stem.task.state"] == "retrying"
        (event,) = [e for e in span.events if e.name == "exception"]
        assert dict(event.attributes or {})["exception.type"] == "ValueError"
        assert dict(event.attributes or {})["exception.message"] == f"boom {attempt}"
    assert runs[2].status.status_code is StatusCode.UNSET


async def test_final_failure_is_an_error_span(
    spans: tuple[InMemorySpanExporter, OtelInstrumentation], autojump_clock: Any
) -> None:
    """A task that fails for good ends its span with status ERROR, the failure
    reason and an exception event carrying the traceback."""
    exporter, instr = spans

    @stem.task("broken")
    async def broken(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        raise KeyError("missing")

    async with (
        stem.Client("memory://", tasks=[broken], instrumentation=instr) as client,
        client.worker(),
    ):
        await client.wait_for(await client.enqueue("broken"), timeout=60)
    (run,) = _by_name(exporter.get_finished_spans(), "stem.run broken")
    assert run.status.status_code is StatusCode.ERROR
    attributes = dict(run.attributes or {})
    assert attributes["stem.task.state"] == "failed"
    assert attributes["stem.task.failure_reason"] == "max-retries-exhausted"
    (event,) = [e for e in run.events if e.name == "exception"]
    assert "KeyError" in str(dict(event.attributes or {})["exception.stacktrace"])


async def test_follow_ups_join_the_trace(
    spans: tuple[InMemorySpanExporter, OtelInstrumentation], autojump_clock: Any
) -> None:
    """A task that enqueues another (a hand-made chain of two links) puts the
    second link's publish and run spans in the first link's trace, parented
    to the first link's run span."""
    exporter, instr = spans
    second_ids: list[str] = []

    @stem.task("link.one")
    async def one(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        assert ctx.client is not None
        second_ids.append(await ctx.client.enqueue("link.two"))

    @stem.task("link.two")
    async def two(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        return None

    async with (
        stem.Client("memory://", tasks=[one, two], instrumentation=instr) as client,
        client.worker(),
    ):
        await client.wait_for(await client.enqueue("link.one"), timeout=10)
        await client.wait_for(second_ids[0], timeout=10)
    finished = exporter.get_finished_spans()
    run_one = _by_name(finished, "stem.run link.one")[0]
    run_two = _by_name(finished, "stem.run link.two")[0]
    publishes = _by_name(finished, "stem.publish")
    assert run_one.context is not None and run_two.context is not None
    assert len(publishes) == 2
    assert {s.context.trace_id for s in publishes if s.context} == {
        run_one.context.trace_id
    }
    assert run_two.context.trace_id == run_one.context.trace_id
    (second_publish,) = [
        s for s in publishes if dict(s.attributes or {})["stem.task.name"] == "link.two"
    ]
    assert second_publish.parent is not None
    assert second_publish.parent.span_id == run_one.context.span_id


async def test_copied_trace_headers_continue_the_trace(
    spans: tuple[InMemorySpanExporter, OtelInstrumentation], autojump_clock: Any
) -> None:
    """An envelope published with a copy of another task's trace headers (as
    canvas follow-ups and workflow activities do) joins that trace even when
    published from outside any span."""
    exporter, instr = spans
    async with (
        stem.Client("memory://", tasks=[noop], instrumentation=instr) as client,
        client.worker(),
    ):
        first = await client.wait_for(await client.enqueue("noop"), timeout=10)
        copied = trace_headers(first.value)
        assert set(copied) >= {"traceparent"}
        await client.wait_for(await client.enqueue("noop", headers=copied), timeout=10)
    runs = _by_name(exporter.get_finished_spans(), "stem.run noop")
    assert len(runs) == 2
    assert len({s.context.trace_id for s in runs if s.context}) == 1


def _points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    assert data is not None
    found: dict[str, list[Any]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def _total(points: dict[str, list[Any]], name: str, **match: str) -> float:
    return sum(
        p.value
        for p in points.get(name, [])
        if all(p.attributes.get(k) == v for k, v in match.items())
    )


async def test_metric_values_after_a_known_workload(autojump_clock: Any) -> None:
    """Three successes, one retry-then-success, one final failure, one revoked
    task and one unknown task give exact counter values, one runtime and
    queue-wait sample per attempt, zero in flight and the last queue depth."""
    reader = InMemoryMetricReader()
    instr = OtelInstrumentation(
        meter_provider=MeterProvider(metric_readers=[reader]), tracing=False
    )
    tries: list[int] = []

    @stem.task("flaky", max_retries=1, retry_policy=stem.RetryPolicy(jitter=False))
    async def flaky(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        tries.append(ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("once")

    @stem.task("broken")
    async def broken(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        raise RuntimeError("always")

    app = stem.App(tasks=[noop, flaky, broken])
    instr.watch(app.signals)
    async with (
        stem.Client("memory://", app=app, instrumentation=instr) as client,
        client.worker(),
    ):
        ids = [await client.enqueue("noop") for _ in range(3)]
        ids.append(await client.enqueue("flaky"))
        ids.append(await client.enqueue("broken"))
        ids.append(await client.enqueue("no.such.task"))
        for task_id in ids:
            await client.wait_for(task_id, timeout=60)
        later = await client.enqueue("noop", countdown=5)
        await client.revoke(later)
        await trio.sleep(6)
        await trio.testing.wait_all_tasks_blocked()
        instr.queue_depth("default", 7)
    points = _points(reader)
    assert _total(points, "stem.tasks.published") == 7
    assert _total(points, "stem.tasks.published", **{"stem.task.name": "noop"}) == 4
    assert _total(points, "stem.tasks.started") == 6
    assert _total(points, "stem.tasks.succeeded") == 4
    assert _total(points, "stem.tasks.retried") == 1
    assert _total(points, "stem.tasks.failed") == 1
    assert _total(points, "stem.tasks.dead_lettered") == 2
    assert _total(points, "stem.tasks.revoked") == 1
    assert _total(points, "stem.tasks.in_flight") == 0
    assert sum(p.count for p in points["stem.task.runtime"]) == 6
    assert sum(p.count for p in points["stem.task.queue_wait"]) == 6
    (depth,) = points["stem.queue.depth"]
    assert depth.value == 7
    assert depth.attributes == {"messaging.destination.name": "default"}
    # the retry ran one second after it was due at the earliest: its queue
    # wait is measured from its not_before, not from the first enqueue
    flaky_wait = [
        p
        for p in points["stem.task.queue_wait"]
        if p.attributes["stem.task.name"] == "flaky"
    ]
    assert flaky_wait[0].max < 1.0


def test_no_sdk_means_no_instrumentation() -> None:
    """Without a global SDK provider the client's default instrumentation is
    the no-op one."""
    assert default_instrumentation() is NOOP
    assert stem.Client.in_memory().instrumentation is NOOP


AUTO_SCRIPT = r"""
import json, trio, stem
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)

@stem.task("noop")
async def noop(ctx, args):
    return None

async def main():
    async with stem.Client.in_memory(tasks=[noop]) as client, client.worker():
        kind = type(client.instrumentation).__name__
        await client.wait_for(await client.enqueue("noop"), timeout=10)
    spans = exporter.get_finished_spans()
    print(json.dumps({
        "kind": kind,
        "spans": sorted(s.name for s in spans),
        "traces": len({s.context.trace_id for s in spans}),
    }))

trio.run(main)
"""


def test_global_sdk_provider_turns_tracing_on_without_settings() -> None:
    """In a fresh process, setting OpenTelemetry's global tracer provider is
    enough: the client picks the OpenTelemetry instrumentation and emits both
    spans in one trace."""
    out = subprocess.run(
        [sys.executable, "-c", AUTO_SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report == {
        "kind": "OtelInstrumentation",
        "spans": ["stem.publish", "stem.run noop"],
        "traces": 1,
    }


async def test_chain_of_two_links_and_a_chord_stay_in_one_trace(
    spans: tuple[InMemorySpanExporter, OtelInstrumentation], autojump_clock: Any
) -> None:
    """A chain of two links submitted through ``client.canvas`` (its second
    link failing once and retried) runs every attempt in one trace; a chord's
    members (published as one batch) and its callback share one trace too."""
    exporter, instr = spans

    @stem.task("add")
    async def add(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
        return int(args.get("x", 0)) + int(ctx.previous_result or 0)

    @stem.task("double", max_retries=1)
    async def double(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
        if ctx.attempt == 1:
            raise RuntimeError("first try fails")
        return 2 * int(ctx.previous_result)

    @stem.task("total")
    async def total(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
        return sum(args.get("results") or ctx.previous_result or [])

    async with (
        stem.Client(
            "memory://", tasks=[add, double, total], instrumentation=instr
        ) as client,
        client.worker(),
    ):
        handle = await client.canvas.chain(
            [stem.signature("add", {"x": 3}), stem.signature("double")]
        )
        assert await handle.get(timeout=600) == 6
        chain_spans = list(exporter.get_finished_spans())
        exporter.clear()
        chord = await client.canvas.chord(
            [stem.signature("add", {"x": 1}), stem.signature("add", {"x": 2})],
            callback=stem.signature("total"),
        )
        await chord.get(timeout=600)
        chord_spans = list(exporter.get_finished_spans())
    runs = [s for s in chain_spans if s.name.startswith("stem.run ")]
    assert sorted(s.name for s in runs) == [
        "stem.run add",
        "stem.run double",
        "stem.run double",
    ]
    assert len({s.context.trace_id for s in chain_spans if s.context}) == 1
    chord_runs = [s for s in chord_spans if s.name.startswith("stem.run ")]
    assert sorted(s.name for s in chord_runs) == [
        "stem.run add",
        "stem.run add",
        "stem.run total",
    ]
    assert len({s.context.trace_id for s in chord_spans if s.context}) == 1
    (batch,) = [
        s
        for s in chord_spans
        if dict(s.attributes or {}).get("messaging.batch.message_count") == 2
    ]
    assert batch.kind is SpanKind.PRODUCER
