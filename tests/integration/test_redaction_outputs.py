"""No password reaches what Stem shows: the real ``stem`` command's output
(``health``, ``queues``, a ``stem worker``'s startup log) against a real
redis-server with a password, dead-letter and result errors, log records
and span attributes; and the metrics endpoint listens on loopback unless
told otherwise."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import trio
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

import stem
from stem._otel import OtelInstrumentation
from stem._prometheus import open_metrics_endpoint
from tests.cli_process import ROOT, STEM, run_stem

USER = "stemacl"
SECRET = "Hunter2-correct-horse"
#: a password with the characters that used to split URLs wrongly
AWKWARD = "wr#ng/pa?ss@word"
AWKWARD_PIECES = ("wr#ng", "ng/pa", "pa?ss", "ss@word", AWKWARD)


@pytest.fixture
def secret_url(redis_server: Any) -> str:
    """A URL with ``?password=`` for an ACL user on the session's server."""
    conn = redis.Redis(host="127.0.0.1", port=redis_server.port)
    try:
        conn.execute_command(
            "ACL", "SETUSER", USER, "on", f">{SECRET}", "~*", "&*", "+@all"
        )
    finally:
        conn.close()
    return f"redis://127.0.0.1:{redis_server.port}/0?username={USER}&password={SECRET}"


def test_health_shows_the_url_without_its_password(secret_url: str) -> None:
    """``stem health --json`` against a server that needs the password is
    healthy and prints ``password=***``, never the password."""
    proc = run_stem("health", "--url", secret_url, "--json")
    assert proc.returncode == 0, proc.stderr
    assert "password=***" in proc.stdout
    assert SECRET not in proc.stdout + proc.stderr


def test_an_unescaped_password_is_never_shown_in_pieces(redis_server: Any) -> None:
    """With ``#``, ``/``, ``?`` and ``@`` unescaped in the password (so the
    URL parses wrongly), ``stem health`` and ``stem queues`` fail without
    printing the password or any piece of it."""
    url = f"redis://{USER}:{AWKWARD}@127.0.0.1:{redis_server.port}/0"
    for args in (("health", "--url", url, "--json"), ("queues", "--url", url)):
        proc = run_stem(*args)
        assert proc.returncode != 0, proc.stdout
        shown = proc.stdout + proc.stderr
        assert "Traceback" not in shown
        for piece in AWKWARD_PIECES:
            assert piece not in shown, (piece, shown)


def test_a_worker_log_never_shows_the_password(secret_url: str, tmp_path: Path) -> None:
    """A ``stem worker`` started with ``?password=`` logs its URL as
    ``password=***`` and serves metrics on 127.0.0.1 by default."""
    env = {**os.environ, "STEM_DEBUG": ""}
    env.pop("STEM_METRICS_HOST", None)
    errors = tmp_path / "stderr.log"
    with errors.open("wb") as sink:
        proc = subprocess.Popen(
            [STEM, "worker", "--app", "tests.cli_app:app", "--url", secret_url,
             "--metrics-port", "0"],
            cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while (
                "stem worker" not in errors.read_text()
                or "ready" not in errors.read_text()
            ):
                assert proc.poll() is None, errors.read_text()
                assert time.monotonic() < deadline, errors.read_text()
                time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    log = errors.read_text()
    assert SECRET not in log
    assert "password=***" in log
    assert "metrics for Prometheus at http://127.0.0.1:" in log


async def test_errors_results_logs_and_spans_mask_passwords(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A task logging a URL and failing with it in its message: the log
    record (through Stem's log filter), the stored error, the dead letter
    and the span's status and exception event show it with its password
    masked."""

    @stem.task("leaky")
    async def leaky(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        url = f"postgresql://app:{AWKWARD}@db:5432/app"
        logging.getLogger("stem.tests.leaky").error("giving up on %s", url)
        raise ConnectionError(f"cannot reach postgresql://app:{AWKWARD}@db:5432/app")

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentation = OtelInstrumentation(tracer_provider=provider, metrics=False)
    caplog.set_level(logging.WARNING, logger="stem")
    caplog.handler.addFilter(stem.TaskLogFilter())  # as configure_logging does
    async with (
        stem.Client(tasks=[leaky], instrumentation=instrumentation) as client,
        client.worker(),
    ):
        task_id = await client.enqueue("leaky")
        result = await client.wait_for(task_id, timeout=10)
        [dead] = await client.dead_letters().list()
    shown: list[str] = []
    assert result.error is not None and dead.error is not None
    shown += [result.error.message, result.error.traceback, dead.error.message]
    logged = [record.getMessage() for record in caplog.records]
    assert "giving up on postgresql://app:***@db:5432/app" in logged
    shown += logged
    for span in exporter.get_finished_spans():
        shown.append(str(span.status.description))
        shown += [str(v) for e in span.events for v in (e.attributes or {}).values()]
        shown += [str(v) for v in (span.attributes or {}).values()]
    text = "\n".join(shown)
    assert "postgresql://app:***@db:5432/app" in result.error.message
    assert "postgresql://app:***@db:5432/app" in dead.error.message
    for piece in AWKWARD_PIECES:
        assert piece not in text, piece
    assert any(
        "postgresql://app:***@" in str(s.status.description)
        for s in exporter.get_finished_spans()
    )


def _listening(port: int) -> set[str]:
    """The local addresses (hex, as in /proc/net/tcp) listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


async def test_the_metrics_endpoint_binds_loopback_unless_told() -> None:
    """open_metrics_endpoint listens on 127.0.0.1 by default, on every
    interface when asked; STEM_METRICS_HOST and --metrics-host set it and
    a bad value is a one-line error."""
    if not Path("/proc/net/tcp").exists():
        pytest.skip("reads the listening sockets from /proc/net/tcp (Linux)")
    async with open_metrics_endpoint(0) as ep:
        assert ep.url.startswith("http://127.0.0.1:")
        assert _listening(ep.port) == {"0100007F"}
    async with open_metrics_endpoint(0, "0.0.0.0") as ep:
        assert _listening(ep.port) == {"00000000"}
    config = stem.WorkerConfig.from_env({"STEM_METRICS_HOST": "0.0.0.0"})
    assert (stem.WorkerConfig().metrics_host, config.metrics_host) == (
        "127.0.0.1",
        "0.0.0.0",
    )
    with pytest.raises(stem.ConfigError, match="STEM_METRICS_HOST"):
        stem.WorkerConfig.from_env({"STEM_METRICS_HOST": "http://x y"})
    proc = await trio.to_thread.run_sync(
        lambda: run_stem(
            "worker", "--app", "tests.cli_app:app", "--metrics-host", "a b"
        )
    )
    assert proc.returncode == 2 and "metrics" in proc.stderr
    assert "--metrics-host" in run_stem("worker", "--help").stdout
