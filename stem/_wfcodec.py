"""JSON encoding of workflow runs and steps, shared by the backends."""

from __future__ import annotations

from typing import Any

from ._codec import dumps, loads
from ._result import ErrorInfo
from .contracts import WorkflowRun, WorkflowStep


def _error(data: Any) -> ErrorInfo | None:
    return ErrorInfo.from_dict(data) if isinstance(data, dict) else None


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
    return WorkflowStep(
        run_id=str(data["run_id"]),
        index=int(data["index"]),
        kind=str(data["kind"]),
        name=str(data["name"]),
        status=str(data.get("status", "pending")),
        value=data.get("value"),
        error=_error(data.get("error")),
        started_at=float(data.get("started_at") or 0.0),
        finished_at=(
            float(data["finished_at"]) if data.get("finished_at") is not None else None
        ),
        meta=dict(data.get("meta") or {}),
    )


def encode_step(step: WorkflowStep) -> str:
    return dumps(step_to_dict(step), what="step")


def decode_step(body: str | bytes) -> WorkflowStep:
    data = loads(body)
    assert isinstance(data, dict)
    return step_from_dict(data)


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
        "wakes": run.wakes,
        "cancel_requested": run.cancel_requested,
        "deadline": run.deadline,
        "parent_id": run.parent_id,
        "current_step": run.current_step,
        "result": run.result,
        "error": run.error.to_dict() if run.error is not None else None,
    }


def _opt_float(value: Any) -> float | None:
    return None if value is None or value == "" else float(value)


def _opt_str(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def run_from_dict(data: dict[str, Any]) -> WorkflowRun:
    return WorkflowRun(
        run_id=str(data["run_id"]),
        workflow=str(data["workflow"]),
        version=int(data.get("version", 1)),
        params=data.get("params"),
        status=str(data.get("status", "pending")),
        created_at=float(data.get("created_at") or 0.0),
        updated_at=float(data.get("updated_at") or 0.0),
        due_at=_opt_float(data.get("due_at")),
        lease_owner=_opt_str(data.get("lease_owner")),
        wakes=int(data.get("wakes") or 0),
        cancel_requested=bool(data.get("cancel_requested")),
        deadline=_opt_float(data.get("deadline")),
        parent_id=_opt_str(data.get("parent_id")),
        current_step=_opt_str(data.get("current_step")),
        result=data.get("result"),
        error=_error(data.get("error")),
    )


def encode_run(run: WorkflowRun) -> str:
    return dumps(run_to_dict(run), what="workflow run")


def decode_run(body: str | bytes) -> WorkflowRun:
    data = loads(body)
    assert isinstance(data, dict)
    return run_from_dict(data)
