"""What a running task sees: :class:`TaskContext`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import attrs
import trio

from ._envelope import Envelope
from ._producer import Producer
from ._progress import Progress

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
    #: where ``progress`` reports go (the worker's throttled writer)
    reporter: Callable[[Progress], None] | None = attrs.field(default=None, repr=False)
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

    def progress(
        self, done: float, total: float | None = None, info: Any = None
    ) -> None:
        """Report how far the task got: ``done`` out of ``total`` (None:
        unknown), with optional JSON ``info``.

        Never blocks, and may be called as often as the task likes, from an
        async handler or a sync one's thread: the worker stores the latest
        report on the task's result record at most once a second per task
        (the last report always lands; the outcome record keeps it) and
        emits ``task_progress`` for each write. Raises TypeError/ValueError
        for a negative or non-numeric ``done``/``total`` and EncodeError for
        ``info`` that is not JSON (or over 4 KiB). RuntimeError in a context
        without a worker (``execution="process"`` tasks cannot report).
        """
        report = Progress(done=done, total=total, info=info)
        if self.reporter is None:
            raise RuntimeError(
                "this task context cannot report progress (no worker behind "
                "it: execution='process' tasks cannot report)"
            )
        if trio.lowlevel.in_trio_run():
            self.reporter(report)
        else:  # a sync handler in its worker thread
            trio.from_thread.run_sync(self.reporter, report)
