"""Observability across processes on one SQLite file: a worker in another
process continues the producer's trace, and ``stem worker --metrics-port``
serves the task metrics to Prometheus."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import trio
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

import stem
from stem._otel import OtelInstrumentation

ROOT = Path(__file__).resolve().parents[2]

#: A worker process exporting its spans as JSON lines to a file through a
#: small SpanExporter; it runs until the task named on the command line ends.
WORKER = r"""
import json, sys, trio, stem
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    SimpleSpanProcessor, SpanExporter, SpanExportResult,
)
from stem._otel import OtelInstrumentation

url, out_path, task_id = sys.argv[1], sys.argv[2], sys.argv[3]

class FileExporter(SpanExporter):
    def __init__(self, path):
        self.file = open(path, "a")
    def export(self, spans):
        for s in spans:
            self.file.write(json.dumps({
                "name": s.name,
                "kind": s.kind.name,
                "trace_id": f"{s.context.trace_id:032x}",
                "span_id": f"{s.context.span_id:016x}",
                "parent_id": f"{s.parent.span_id:016x}" if s.parent else None,
                "remote_parent": bool(s.parent and s.parent.is_remote),
                "attributes": dict(s.attributes),
            }) + "\n")
        self.file.flush()
        return SpanExportResult.SUCCESS
    def shutdown(self):
        self.file.close()

provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(FileExporter(out_path)))

@stem.task("xp.greet")
async def greet(ctx, args):
    return f"hello {args['who']}"

async def main():
    instr = OtelInstrumentation(tracer_provider=provider, metrics=False)
    async with stem.Client(url, tasks=[greet], instrumentation=instr) as client:
        async with client.worker(claim_wait=0.05):
            await client.wait_for(task_id, timeout=60)
    provider.shutdown()

trio.run(main)
"""


async def test_consumer_span_in_another_process_joins_the_producers_trace(
    tmp_path: Path,
) -> None:
    """A task enqueued here and run by a worker process on the same SQLite
    file gives a CONSUMER span there whose trace id is the producer's and
    whose (remote) parent is the producer's publish span."""
    url = f"sqlite:///{tmp_path / 'stem.db'}"
    spans_file = tmp_path / "spans.jsonl"
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instr = OtelInstrumentation(tracer_provider=provider, metrics=False)
    with trio.fail_after(90):
        async with stem.Client(url, instrumentation=instr) as client:
            task_id = await client.enqueue("xp.greet", args={"who": "trace"})
            proc = await trio.run_process(
                [sys.executable, "-c", WORKER, url, str(spans_file), task_id],
                cwd=ROOT,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
            assert proc.returncode == 0, proc.stderr.decode()
            result = await client.wait_for(task_id, timeout=10)
    assert result.value == "hello trace"
    (producer,) = exporter.get_finished_spans()
    assert producer.name == "stem.publish"
    assert producer.context is not None
    remote = [json.loads(line) for line in spans_file.read_text().splitlines()]
    (consumer,) = [s for s in remote if s["name"] == "stem.run xp.greet"]
    assert consumer["kind"] == "CONSUMER"
    assert consumer["trace_id"] == f"{producer.context.trace_id:032x}"
    assert consumer["parent_id"] == f"{producer.context.span_id:016x}"
    assert consumer["remote_parent"] is True
    assert consumer["attributes"]["messaging.message.id"] == task_id
    assert consumer["attributes"]["messaging.operation"] == "process"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        body: bytes = r.read()
        return body.decode()


def _sample(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_stem_worker_serves_prometheus_metrics(tmp_path: Path) -> None:
    """``stem worker --metrics-port`` exposes task counters, runtime
    histograms and queue depth to a Prometheus scrape, and still exits 0 on
    SIGTERM."""
    url = f"sqlite:///{tmp_path / 'stem.db'}"
    port = _free_port()
    env = {**os.environ, "STEM_BROKER_URL": url}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stem.cli",
            "worker",
            "--app",
            "tests.cli_app:app",
            "--metrics-port",
            str(port),
            "--log-format",
            "json",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with trio.fail_after(90):
            async with stem.Client(url) as client:
                ok = [
                    await client.enqueue("cli.add", args={"a": i, "b": 1})
                    for i in range(3)
                ]
                bad = await client.enqueue("cli.boom")
                for task_id in [*ok, bad]:
                    await client.wait_for(task_id, timeout=60)
            text = ""
            while _sample(text, "stem_tasks_failed_total") < 1:
                await trio.sleep(0.2)
                try:
                    text = await trio.to_thread.run_sync(_scrape, port)
                except OSError:
                    text = ""
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    name = {"stem_task_name": "cli.add"}
    assert _sample(text, "stem_tasks_succeeded_total", **name) == 3
    assert _sample(text, "stem_tasks_started_total") == 4
    assert _sample(text, "stem_tasks_failed_total", stem_task_name="cli.boom") == 1
    assert _sample(text, "stem_tasks_dead_lettered_total") == 1
    assert _sample(text, "stem_task_runtime_seconds_count", **name) == 3
    assert "stem_task_queue_wait_seconds_bucket" in text
    assert "stem_queue_depth" in text
    log_lines: list[dict[str, Any]] = [
        json.loads(line) for line in err.splitlines() if line.startswith("{")
    ]
    assert any("metrics for Prometheus" in r["message"] for r in log_lines)
