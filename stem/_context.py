"""What a running task sees: :class:`TaskContext`."""

from __future__ import annotations

import logging
from typing import Any

import attrs
import trio

from ._envelope import Envelope
from ._producer import Producer

_TASK_LOGGER = logging.getLogger("stem.task")


@attrs.define(kw_only=True, eq=False)
class TaskContext:
    """Information about the current attempt, handed to every task.

    ``attempt`` counts from 1. ``previous_result`` is the value of the
    previous link when the task runs inside a chain (``None`` otherwise).
    ``cancel_scope`` is the attempt's scope: cancelling it stops the attempt.
    """

    task_id: str
    name: str
    attempt: int
    max_retries: int
    queue: str
    headers: dict[str, str]
    envelope: Envelope
    worker_id: str
    #: the worker's client (``stem.Client``), to enqueue follow-up work
    client: Producer | None = None
    previous_result: Any = None
    soft_deadline: float | None = None
    hard_deadline: float | None = None
    cancel_scope: trio.CancelScope | None = None
    _log: logging.LoggerAdapter[logging.Logger] | None = attrs.field(
        default=None, init=False
    )

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger whose records carry this task's id, name and attempt."""
        if self._log is None:
            self._log = logging.LoggerAdapter(
                _TASK_LOGGER,
                {
                    "task_id": self.task_id,
                    "task_name": self.name,
                    "attempt": self.attempt,
                },
            )
        return self._log

    @property
    def is_last_attempt(self) -> bool:
        """True when a failure now would not be retried for lack of attempts."""
        return self.attempt > self.max_retries

    def time_left(self) -> float | None:
        """Seconds until the nearest time limit (None when there is none)."""
        deadlines = [
            d for d in (self.soft_deadline, self.hard_deadline) if d is not None
        ]
        if not deadlines:
            return None
        return max(min(deadlines) - trio.current_time(), 0.0)

    async def enqueue(
        self, name: str, args: dict[str, Any] | None = None, **kw: Any
    ) -> str:
        """Enqueue another task through the worker's client."""
        if self.client is None:
            raise RuntimeError("this task context has no client to enqueue with")
        return await self.client.enqueue(name, args, **kw)
