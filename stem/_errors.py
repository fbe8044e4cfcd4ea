"""The exceptions Stem raises. Every one derives from :class:`StemError`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._result import ErrorInfo


class StemError(Exception):
    """Base class of every error Stem raises on purpose."""


class ConfigError(StemError, ValueError):
    """A configuration value (URL, environment variable, option) is invalid."""


class EncodeError(StemError, TypeError):
    """Task arguments or a result cannot be encoded; nothing was written."""


class DecodeError(StemError, ValueError):
    """A message body cannot be decoded into an envelope."""


class UnknownTask(StemError, LookupError):
    """No task with that name is registered on the app."""


class DuplicateTask(StemError, ValueError):
    """Two tasks (or workflows) were registered under one name."""


class BrokerUnavailable(StemError, ConnectionError):
    """The backend cannot be reached (after a bounded retry)."""


class GroupExpired(StemError):
    """A member arrived for a group (or chord) whose counter has expired; it
    is not recorded (the earlier members' results are gone)."""


class WaitTimeout(StemError, TimeoutError):
    """A wait passed its timeout before the awaited thing finished."""


class SoftTimeLimitExceeded(StemError):
    """Raised inside a task when its ``soft_time_limit`` passes.

    The task may catch it to clean up; the hard limit still applies.
    """


class TimeLimitExceeded(StemError):
    """A task ran past its ``hard_time_limit`` and was stopped."""


class TaskRevoked(StemError):
    """A running task was revoked with ``terminate=True``."""


class Retry(StemError):
    """Raise from a task to ask for another attempt.

    ``countdown`` overrides the retry policy's delay for this attempt. The retry
    still counts against ``max_retries``.
    """

    def __init__(
        self, message: str = "retry requested", *, countdown: float | None = None
    ):
        super().__init__(message)
        if countdown is not None and countdown < 0:
            raise ValueError(f"countdown must be >= 0 seconds, got {countdown!r}")
        self.countdown = countdown


class TaskFailed(StemError):
    """A task (or a canvas member) ended in a failed or revoked state.

    ``error`` carries the failing task's type, message and traceback.
    """

    def __init__(self, task_id: str, error: ErrorInfo | None, *, state: Any = None):
        summary = f"{error.type}: {error.message}" if error else "no error recorded"
        super().__init__(f"task {task_id} failed: {summary}")
        self.task_id = task_id
        self.error = error
        self.state = state
