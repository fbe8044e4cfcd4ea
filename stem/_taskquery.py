"""Rules every backend's task listing shares (``TaskQuery``): limits, the
page cursor, and filtering a decoded record. Pure: no I/O."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from ._result import TaskResult
from ._states import TaskState

#: The most records one page returns.
MAX_LIMIT = 200
#: The most records a queue or name filter looks through per call.
SCAN_BOUND = 10_000


def clamp_limit(limit: int) -> int:
    """``limit`` within 1..MAX_LIMIT."""
    return max(1, min(int(limit), MAX_LIMIT))


def check_state(state: str | None) -> str | None:
    """A state filter: one of TaskState's values (ValueError otherwise)."""
    if state is None:
        return None
    try:
        return TaskState(state).value
    except ValueError:
        known = ", ".join(s.value for s in TaskState)
        raise ValueError(f"unknown task state {state!r}; known: {known}") from None


def make_cursor(result: TaskResult) -> str:
    """The cursor that continues after ``result`` (``updated_at|task_id``)."""
    return f"{result.updated_at!r}|{result.task_id}"


def parse_cursor(before: str | None) -> tuple[float, str] | None:
    """``(updated_at, task_id)`` of a cursor; ValueError when it is not one."""
    if before is None or before == "":
        return None
    stamp, sep, task_id = before.partition("|")
    try:
        at = float(stamp)
    except ValueError:
        raise ValueError(f"not a task page cursor: {before[:80]!r}") from None
    if not sep or not math.isfinite(at):
        raise ValueError(f"not a task page cursor: {before[:80]!r}")
    return at, task_id


def is_before(result: TaskResult, cursor: tuple[float, str] | None) -> bool:
    """Whether ``result`` sorts after the cursor (newest first)."""
    if cursor is None:
        return True
    return (result.updated_at, result.task_id) < cursor


def matches(
    result: TaskResult, *, state: str | None, queue: str | None, name: str | None
) -> bool:
    """Whether ``result`` passes every filter given."""
    return (
        (state is None or result.state.value == state)
        and (queue is None or result.queue == queue)
        and (name is None or result.name == name)
    )


def bucket_of(at: float, bucket: float) -> float:
    """The start of the ``bucket``-second interval holding ``at``."""
    return math.floor(at / bucket) * bucket


#: Arguments are kept on a task's records when their JSON is at most this
#: many bytes (the dashboard's task page shows them).
MAX_KEPT_ARGS = 1024


def operator_meta(args: Any, headers: Mapping[str, str]) -> dict[str, Any]:
    """What a task's records keep for operators: its arguments when small
    (``args``; else ``args_bytes``, their size) and its trace id (from the
    W3C ``traceparent`` header) when traced."""
    meta: dict[str, Any] = {}
    try:
        size = len(json.dumps(args, separators=(",", ":")))
    except (TypeError, ValueError):
        size = MAX_KEPT_ARGS + 1
    if size <= MAX_KEPT_ARGS:
        meta["args"] = args
    else:
        meta["args_bytes"] = size
    parts = headers.get("traceparent", "").split("-")
    if len(parts) == 4 and len(parts[1]) == 32:
        meta["trace_id"] = parts[1]
    return meta
