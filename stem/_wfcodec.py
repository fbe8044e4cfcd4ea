"""JSON encoding of workflow runs and steps, shared by the backends.

Decoding is total: a stored run or step that is not what this module wrote
raises DecodeError (and nothing else), naming the field."""

from __future__ import annotations

import logging
from typing import Any

from ._codec import decode_object, dumps, error_from_dict
from ._errors import DecodeError
from ._result import ErrorInfo
from .contracts import WorkflowRun, WorkflowStep

logger = logging.getLogger("stem.workflows")


def log_unreadable_run(run_id: object, exc: DecodeError) -> None:
    """Say that a stored run does not decode (a backend's claim sets it aside
    instead of failing: its row stays, marked failed, never claimed again)."""
    logger.warning("workflow run %r does not decode and is set aside: %s", run_id, exc)


def _error(data: Any) -> ErrorInfo | None:
    return error_from_dict(data) if isinstance(data, dict) else None


def _text(data: dict[str, Any], key: str, default: str | None = None) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise DecodeError(f"stored field {key!r} must be a string")
    return value


def _whole(data: dict[str, Any], key: str, default: int) -> int:
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise DecodeError(f"stored field {key!r} must be an integer")
    return value


def _time(value: Any, key: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DecodeError(f"stored field {key!r} must be a number")
    if not -1e13 < value < 1e13:
        raise DecodeError(f"stored field {key!r} is out of range")
    return float(value)


def step_to_dict(step: WorkflowStep) -> dict[str, Any]:
    return {
        "run_id": step.run_id,
        "index": step.index,
        "kind": step.kind,
        "name": step.name,
        "status": step.status,
        "value": step.value,
        "error": step.error.to_dict() if step.error is not None else None,
        "started_at": step.started_at,
        "finished_at": step.finished_at,
        "meta": dict(step.meta),
    }


def step_from_dict(data: dict[str, Any]) -> WorkflowStep:
    meta = data.get("meta") or {}
    if not isinstance(meta, dict):
        raise DecodeError("stored field 'meta' must be an object")
    index = data.get("index")
    if isinstance(index, bool) or not isinstance(index, int):
        raise DecodeError("stored field 'index' must be an integer")
    return WorkflowStep(
        run_id=_text(data, "run_id"),
        index=index,
        kind=_text(data, "kind"),
        name=_text(data, "name"),
        status=_text(data, "status", "pending"),
        value=data.get("value"),
        error=_error(data.get("error")),
        started_at=_time(data.get("started_at"), "started_at") or 0.0,
        finished_at=_time(data.get("finished_at"), "finished_at"),
        meta=meta,
    )


def encode_step(step: WorkflowStep) -> str:
    return dumps(step_to_dict(step), what="step")


def decode_step(body: str | bytes) -> WorkflowStep:
    return step_from_dict(decode_object(body, what="workflow step"))


def run_to_dict(run: WorkflowRun) -> dict[str, Any]:
    """Every field but ``history``."""
    return {
        "run_id": run.run_id,
        "workflow": run.workflow,
        "version": run.version,
        "params": run.params,
        "status": run.status,
        "created_at": run.created_at,
        "updated_at": run.updated_at,
        "due_at": run.due_at,
        "lease_owner": run.lease_owner,
        "fence": run.fence,
        "wakes": run.wakes,
        "cancel_requested": run.cancel_requested,
        "deadline": run.deadline,
        "parent_id": run.parent_id,
        "current_step": run.current_step,
        "result": run.result,
        "error": run.error.to_dict() if run.error is not None else None,
    }


def _opt_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise DecodeError(f"stored field {key!r} must be a string")
    return value


def run_from_dict(data: dict[str, Any]) -> WorkflowRun:
    return WorkflowRun(
        run_id=_text(data, "run_id"),
        workflow=_text(data, "workflow"),
        version=_whole(data, "version", 1),
        params=data.get("params"),
        status=_text(data, "status", "pending"),
        created_at=_time(data.get("created_at"), "created_at") or 0.0,
        updated_at=_time(data.get("updated_at"), "updated_at") or 0.0,
        due_at=_time(data.get("due_at"), "due_at"),
        lease_owner=_opt_str(data, "lease_owner"),
        # Rows written before fencing tokens existed read as token 0.
        fence=_whole(data, "fence", 0),
        wakes=_whole(data, "wakes", 0),
        cancel_requested=data.get("cancel_requested") is True,
        deadline=_time(data.get("deadline"), "deadline"),
        parent_id=_opt_str(data, "parent_id"),
        current_step=_opt_str(data, "current_step"),
        result=data.get("result"),
        error=_error(data.get("error")),
    )


def encode_run(run: WorkflowRun) -> str:
    return dumps(run_to_dict(run), what="workflow run")


def readable_run(body: str | bytes) -> WorkflowRun | None:
    """The run stored as ``body``, or None (logged) when it does not decode:
    listing runs skips such a row rather than failing on it."""
    try:
        return decode_run(body)
    except DecodeError as exc:
        logger.warning("skipped a stored workflow run that does not decode: %s", exc)
        return None


def decode_run(body: str | bytes) -> WorkflowRun:
    return run_from_dict(decode_object(body, what="workflow run"))
