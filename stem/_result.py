"""Task results and error records."""

from __future__ import annotations

import traceback as _traceback
from typing import Any

import attrs

from ._progress import Progress
from ._redact import redact_text
from ._states import TaskState


@attrs.frozen(kw_only=True)
class ErrorInfo:
    """A failure as data: exception type, message and formatted traceback
    (:meth:`from_exception` masks passwords of URLs in both)."""

    type: str
    message: str
    traceback: str = ""

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        kind = type(exc)
        qualname = kind.__qualname__
        module = kind.__module__
        if module in ("builtins", "__main__"):
            name = qualname
        elif module.split(".", 1)[0] == "stem":
            name = f"stem.{qualname}"  # public path: stem._errors.X is stem.X
        else:
            name = f"{module}.{qualname}"
        return cls(
            type=name,
            message=redact_text(str(exc)),
            traceback=redact_text("".join(_traceback.format_exception(exc))),
        )

    def to_dict(self) -> dict[str, str]:
        return {"type": self.type, "message": self.message, "traceback": self.traceback}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ErrorInfo:
        return cls(
            type=str(data.get("type", "")),
            message=str(data.get("message", "")),
            traceback=str(data.get("traceback", "")),
        )


@attrs.frozen(kw_only=True)
class TaskResult:
    """What is known about a task: its state and, when finished, its outcome.

    ``attempt`` counts from 1. ``error`` is set for FAILED (and for RETRYING,
    with the error that caused the retry); a later write clears it.
    ``progress`` is the attempt's latest ``ctx.progress(...)`` report (kept
    on the final record; None when the task reported none).
    """

    task_id: str
    state: TaskState
    value: Any = None
    error: ErrorInfo | None = None
    attempt: int = 0
    name: str = ""
    queue: str = ""
    updated_at: float = 0.0
    meta: dict[str, Any] = attrs.field(factory=dict)
    progress: Progress | None = None

    @property
    def ok(self) -> bool:
        return self.state is TaskState.SUCCEEDED

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal
