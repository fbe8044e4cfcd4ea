"""Hostile names and ids: names are matched whole, ids and names cannot forge
log lines, and the CLI never writes control characters from stored data."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import pytest
import trio

import stem
from stem._envelope import Envelope
from stem._handler import check_task_name
from stem._ids import check_id
from stem._logging import TaskLogFormatter, configure_logging
from stem._options import check_queue_name
from stem._text import escape_control
from stem.adapters.postgres._config import parse_url as parse_postgres_url
from stem.adapters.redis._conn import parse_url as parse_redis_url
from tests.cli_process import one_line_error, run_stem

HOSTILE = ["default\n", "default\r", "de\x1bfault", "x\x00", "a\u2028b", "b\x9bc"]


@pytest.mark.parametrize("name", HOSTILE)
def test_queue_and_task_names_are_matched_whole(name: str) -> None:
    """A queue or task name with a trailing newline or any control character is refused."""
    with pytest.raises(ValueError, match="invalid queue name"):
        check_queue_name(name)
    with pytest.raises(ValueError, match="invalid task name"):
        check_task_name(name)
    with pytest.raises(ValueError, match="invalid task name"):
        stem.signature(name)
    with pytest.raises(ValueError):
        stem.TaskOptions(queue=name)


def test_backend_and_workflow_names_are_matched_whole() -> None:
    """A Postgres schema, a Redis namespace, a workflow name or an event topic
    ending in a newline is refused."""
    with pytest.raises(stem.ConfigError, match="invalid schema name"):
        parse_postgres_url("postgresql://u@h/db?schema=stem%0A")
    with pytest.raises(stem.ConfigError, match="invalid namespace"):
        parse_redis_url("redis://h/0?namespace=stem%0A", {})

    async def script(wf: Any) -> None:
        return None

    with pytest.raises(ValueError, match="workflow name"):
        stem.WorkflowScript("flow\n", script)
    assert parse_redis_url("redis://h/0?namespace=app.v2", {}).namespace == "app.v2"


@pytest.mark.parametrize("task_id", ["", "a\nb", "x" * 256, "\x1b[2J"])
async def test_enqueue_and_revoke_refuse_bad_task_ids(task_id: str) -> None:
    """enqueue(task_id=) and revoke() refuse an empty, overlong or control-character id."""
    assert check_id("order-42:retry/1") == "order-42:retry/1"
    async with stem.Client.in_memory() as client:
        with pytest.raises(ValueError, match="task id"):
            await client.enqueue("job", task_id=task_id)
        with pytest.raises(ValueError, match="task id"):
            await client.revoke(task_id)
        assert await client.queues() == []


def test_text_log_lines_escape_control_characters() -> None:
    """A log record whose message, task id or name holds a newline or an escape
    is written as one line with them escaped."""
    record = logging.LogRecord(
        "stem.worker", logging.WARNING, __file__, 1, "got %s", ("a\nb\x1b[31m",), None
    )
    record.task_id = "id\nforged"
    record.task_name = "name\x07"
    record.attempt = 1
    record.trace_id = "-"
    line = TaskLogFormatter().format(record)
    assert "\n" not in line and "\x1b" not in line and "\x07" not in line
    assert "got a\\nb\\x1b[31m" in line
    assert "[name\\x07 id\\nforged #1" in line
    assert escape_control("tb\n  line", keep_newlines=True) == "tb\n  line"


async def test_a_task_id_with_a_newline_cannot_forge_a_log_line() -> None:
    """A message whose id carries a forged log line is dead-lettered and logged
    on one line, the id shown with repr."""
    stream = io.StringIO()
    handler = configure_logging("INFO", stream=stream)
    forged = "x\n2030-01-01 00:00:00 INFO stem.worker: all good"
    try:
        async with stem.Client.in_memory() as client:
            await client.backend.broker.publish(
                [Envelope(id=forged, name="not.registered", enqueued_at=stem.now())]
            )
            async with client.worker(concurrency=1, claim_wait=0.05):
                with trio.fail_after(10):
                    while not await client.dead_letters().count():
                        await trio.sleep(0.01)
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [line for line in stream.getvalue().splitlines() if "all good" in line]
    assert len(lines) == 1
    assert "dead-lettered 'x\\n2030-01-01" in lines[0]


def test_cli_escapes_control_characters_from_stored_data(tmp_path: Path) -> None:
    """`stem dlq show`, `dlq list` and `result` print a hostile name and args
    without raw escape sequences; refusals quote input in one line."""
    url = f"sqlite:///{tmp_path}/h.db"
    evil = "evil\x1b[2J\x1b]0;pwned\x07"

    async def produce_and_dead_letter() -> None:
        async with stem.Client.from_url(url) as client:
            await client.backend.broker.publish(
                [
                    Envelope(
                        id="hostile-1",
                        name=evil,
                        args={"x": "\x1b[31mred\r\n"},
                        enqueued_at=stem.now(),
                    )
                ]
            )
            async with client.worker(concurrency=1, claim_wait=0.05):
                with trio.fail_after(20):
                    while not await client.dead_letters().count():
                        await trio.sleep(0.02)

    trio.run(produce_and_dead_letter)
    outputs = [
        run_stem("dlq", "show", "default", "hostile-1", "--url", url),
        run_stem("dlq", "list", "default", "--url", url),
        run_stem("result", "hostile-1", "--url", url),
    ]
    for proc in outputs:
        assert proc.returncode == 0, proc.stderr
        for char in "\x1b\x07\r":
            assert char not in proc.stdout + proc.stderr, proc.stdout
        assert "evil" in proc.stdout
    assert "evil\\x1b[2J\\x1b]0;pwned\\x07" in outputs[0].stdout
    missing = run_stem("dlq", "show", "default", "no\x1b[2Jsuch", "--url", url)
    assert "no\\x1b[2Jsuch" in one_line_error(missing, 1)
