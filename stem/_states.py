"""Task states."""

from __future__ import annotations

import enum


class TaskState(enum.StrEnum):
    """Where a task is in its life. Terminal states are final and written once."""

    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REVOKED = "revoked"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({TaskState.SUCCEEDED, TaskState.FAILED, TaskState.REVOKED})
