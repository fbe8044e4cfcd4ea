"""Structured logging: task id, name, attempt and trace id on every record
about a task; passwords in URLs never reach a log line.

``configure_logging(level, json=False)`` installs one handler on the root
logger with :class:`TaskLogFilter` and a text or JSON formatter (``stem
worker --log-format json`` does this). To use your own handler, add the
filter to it::

    handler.addFilter(stem.TaskLogFilter())
    handler.setFormatter(stem.JsonLogFormatter())

Where the fields come from: ``ctx.log`` (the logger handed to tasks) sets
them explicitly; with OpenTelemetry instrumentation on, every record logged
inside an attempt (any logger, even in a thread the task started) gets them
from a context variable; ``trace_id``/``span_id`` come from the current span.
"""

from __future__ import annotations

import importlib
import json as _json
import logging
import sys
from collections.abc import Callable
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import IO, Any

import attrs

from ._envelope import Envelope
from ._redact import redact_text as redact_text
from ._text import escape_control

#: value of a field that does not apply to a record (not about a task)
MISSING = "-"

_FIELDS = ("task_id", "task_name", "attempt", "queue", "worker_id")
_traceback_formatter = logging.Formatter()


@attrs.frozen(kw_only=True)
class TaskLogContext:
    """The task an execution context belongs to (see :func:`bind_task`)."""

    task_id: str
    task_name: str
    attempt: int
    queue: str
    worker_id: str = ""


_current: ContextVar[TaskLogContext | None] = ContextVar(
    "stem_task_log_context", default=None
)


def bind_task(envelope: Envelope, worker_id: str = "") -> Token[TaskLogContext | None]:
    """Mark the current context as running ``envelope``'s attempt; undo with
    :func:`unbind_task`. Children started from it (threads, nurseries)
    inherit it."""
    return _current.set(
        TaskLogContext(
            task_id=envelope.id,
            task_name=envelope.name,
            attempt=envelope.attempt,
            queue=envelope.queue,
            worker_id=worker_id,
        )
    )


def unbind_task(token: Token[TaskLogContext | None]) -> None:
    _current.reset(token)


def current_task() -> TaskLogContext | None:
    """The task whose attempt the current context runs, if any."""
    return _current.get()


_trace: Any = None  # opentelemetry.trace, imported on first use


def _span_ids() -> tuple[str, str] | None:
    global _trace
    if _trace is None:
        try:
            _trace = importlib.import_module("opentelemetry.trace")
        except ImportError:  # the otel extra is not installed
            _trace = False
    if _trace is False:
        return None
    ctx = _trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return _trace.format_trace_id(ctx.trace_id), _trace.format_span_id(ctx.span_id)


class TaskLogFilter(logging.Filter):
    """Adds ``task_id``, ``task_name``, ``attempt``, ``queue``, ``worker_id``,
    ``trace_id`` and ``span_id`` to every record (``"-"`` when they do not
    apply) and redacts passwords in URLs in the message and traceback.
    Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = record.__dict__
        bound = _current.get()
        if "task_id" not in fields and bound is not None:
            fields["task_id"] = bound.task_id
            fields["task_name"] = bound.task_name
            fields["attempt"] = bound.attempt
            fields["queue"] = bound.queue
            fields["worker_id"] = bound.worker_id or MISSING
        for name in _FIELDS:
            fields.setdefault(name, MISSING)
        if "trace_id" not in fields:
            ids = _span_ids()
            fields["trace_id"], fields["span_id"] = ids or (MISSING, MISSING)
        fields.setdefault("span_id", MISSING)
        message = record.getMessage()
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_text(
                _traceback_formatter.formatException(record.exc_info)
            )
        return True


class TaskLogFormatter(logging.Formatter):
    """Text lines; records about a task get
    ``[task_name task_id #attempt trace=...]`` before the message. Control
    characters in the line are escaped (``\\n``, ``\\x1b``): one record is
    one line."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None) -> None:
        super().__init__(
            fmt or "%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt
        )

    def formatMessage(self, record: logging.LogRecord) -> str:
        # One record, one line: control characters in the message or in a
        # task's id or name are escaped, so they cannot forge a log line or
        # send escape sequences to a terminal (a traceback still follows on
        # its own lines).
        line = escape_control(super().formatMessage(record))
        task_id = getattr(record, "task_id", MISSING)
        if task_id == MISSING:
            return line
        head, sep, message = line.partition(": ")
        tag = escape_control(
            f"[{getattr(record, 'task_name', MISSING)} {task_id}"
            f" #{getattr(record, 'attempt', MISSING)}"
            f" trace={getattr(record, 'trace_id', MISSING)}]"
        )
        return f"{head} {tag}{sep}{message}" if sep else f"{tag} {line}"


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (ISO 8601, UTC), ``level``,
    ``logger``, ``message``, the task and trace fields that apply, ``exc``
    (the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in (*_FIELDS, "trace_id", "span_id"):
            value = getattr(record, name, MISSING)
            if value != MISSING and value != "":
                data[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["exc"] = record.exc_text
        return _json.dumps(data, default=str)


def configure_logging(
    level: int | str = "INFO",
    *,
    json: bool = False,
    stream: IO[str] | None = None,
    formatter: Callable[[], logging.Formatter] | None = None,
) -> logging.Handler:
    """Send log records to ``stream`` (stderr) with task fields and redaction,
    as text or one JSON object per line; returns the handler (remove it from
    the root logger to undo)."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(TaskLogFilter())
    if formatter is not None:
        handler.setFormatter(formatter())
    else:
        handler.setFormatter(JsonLogFormatter() if json else TaskLogFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler
