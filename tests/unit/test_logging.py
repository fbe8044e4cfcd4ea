"""Structured logging: task fields and trace ids on records about a task,
JSON lines, and URLs whose passwords never reach a log line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

import stem
from stem._logging import (
    JsonLogFormatter,
    TaskLogFilter,
    TaskLogFormatter,
    configure_logging,
    redact_text,
)
from stem._otel import OtelInstrumentation


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """JSON log lines of the ``app`` logger tree, through the task filter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(TaskLogFilter())
    handler.setFormatter(JsonLogFormatter())
    logger = logging.getLogger("app")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_passwords_in_urls_are_masked() -> None:
    """Every URL's password in a text is replaced by ***; other text is kept."""
    text = (
        "connect redis://:s3cret@cache:6379/0 and "
        "postgresql://app:hunter2@db/jobs, then sqlite:///stem.db"
    )
    assert redact_text(text) == (
        "connect redis://:***@cache:6379/0 and "
        "postgresql://app:***@db/jobs, then sqlite:///stem.db"
    )
    assert (
        redact_text("redis://u:pw@host:notaport/0") == "redis://u:***@host:notaport/0"
    )
    assert redact_text("no urls here") == "no urls here"


def test_filter_masks_messages_arguments_and_tracebacks(
    captured: io.StringIO,
) -> None:
    """A password in a format argument, in the message and in an exception's
    traceback never reaches the output."""
    log = logging.getLogger("app.db")
    log.info("opening %s", "postgresql://app:hunter2@db/jobs")
    try:
        raise ConnectionError("cannot reach redis://:s3cret@cache:6379/0")
    except ConnectionError:
        log.exception("backend down")
    output = captured.getvalue()
    assert "hunter2" not in output
    assert "s3cret" not in output
    first, second = _lines(captured)
    assert first["message"] == "opening postgresql://app:***@db/jobs"
    assert "redis://:***@cache:6379/0" in second["exc"]
    assert "task_id" not in first


async def test_records_inside_an_attempt_carry_task_and_trace_fields(
    captured: io.StringIO, autojump_clock: Any
) -> None:
    """With OpenTelemetry instrumentation, a plain logger used inside a task
    (and ``ctx.log``) writes the task id, name, attempt, queue and the trace id
    of the task's run span; records outside tasks have none of them."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instr = OtelInstrumentation(tracer_provider=provider, metrics=False)

    @stem.task("logged", max_retries=1)
    async def logged(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        logging.getLogger("app.task").info("working on %s", args["item"])
        if ctx.attempt == 1:
            raise RuntimeError("again")

    async with (
        stem.Client("memory://", tasks=[logged], instrumentation=instr) as client,
        client.worker(queues=["default"]),
    ):
        logging.getLogger("app").info("outside")
        task_id = await client.enqueue("logged", args={"item": 7})
        await client.wait_for(task_id, timeout=600)
    outside, first, second = _lines(captured)
    assert "task_id" not in outside and "trace_id" not in outside
    (run1, run2) = sorted(
        (s for s in exporter.get_finished_spans() if s.name == "stem.run logged"),
        key=lambda s: dict(s.attributes or {})["stem.task.attempt"],
    )
    for record, attempt, span in ((first, 1, run1), (second, 2, run2)):
        assert record["message"] == "working on 7"
        assert record["task_id"] == task_id
        assert record["task_name"] == "logged"
        assert record["attempt"] == attempt
        assert record["queue"] == "default"
        assert span.context is not None
        assert record["trace_id"] == f"{span.context.trace_id:032x}"
        assert record["span_id"] == f"{span.context.span_id:016x}"


async def test_ctx_log_carries_task_fields_without_opentelemetry(
    captured: io.StringIO, autojump_clock: Any
) -> None:
    """Without any instrumentation, ``ctx.log`` lines still carry the task's
    id, name and attempt."""
    stem_task_logger = logging.getLogger("stem.task")
    handler = logging.getLogger("app").handlers[-1]
    stem_task_logger.addHandler(handler)
    try:

        @stem.task("plain")
        async def plain(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
            ctx.log.warning("hello from the task")

        async with stem.Client.in_memory(tasks=[plain]) as client, client.worker():
            task_id = await client.enqueue("plain")
            await client.wait_for(task_id, timeout=10)
    finally:
        stem_task_logger.removeHandler(handler)
    (record,) = _lines(captured)
    assert record["task_id"] == task_id
    assert record["task_name"] == "plain"
    assert record["attempt"] == 1
    assert record["level"] == "warning"


def test_text_formatter_tags_task_lines_only() -> None:
    """The text format puts ``[name id #attempt trace=...]`` before the message
    of records about a task and leaves other lines alone."""
    formatter = TaskLogFormatter("%(levelname)s %(name)s: %(message)s")
    log_filter = TaskLogFilter()
    about = logging.LogRecord("x", logging.INFO, __file__, 1, "done", None, None)
    about.__dict__.update(task_id="T1", task_name="mail.send", attempt=2)
    other = logging.LogRecord("x", logging.INFO, __file__, 1, "idle", None, None)
    for record in (about, other):
        assert log_filter.filter(record)
    assert formatter.format(about) == "INFO x [mail.send T1 #2 trace=-]: done"
    assert formatter.format(other) == "INFO x: idle"


def test_configure_logging_installs_one_json_handler() -> None:
    """``configure_logging(json=True)`` writes JSON lines with the filter on
    and returns the handler so it can be removed."""
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure_logging("warning", json=True, stream=stream)
    try:
        logging.getLogger("app.cfg").warning("url %s", "redis://:pw@h:1/0")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["message"] == "url redis://:***@h:1/0"
    assert record["logger"] == "app.cfg"
    assert record["level"] == "warning"
