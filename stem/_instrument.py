"""Instrumentation hooks: where tracing and metrics plug into the runtime.

The runtime calls an :class:`Instrumentation` at two places: when envelopes
are published (to add trace context to their headers) and around each
execution attempt (a span, timing, outcome). The base class does nothing and
costs close to nothing; ``stem._otel`` provides the OpenTelemetry one, chosen
automatically when OpenTelemetry's global tracer provider is set.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from ._envelope import Envelope
from ._result import TaskResult


class AttemptScope:
    """What the runtime reports about one execution attempt."""

    def outcome(self, result: TaskResult | None, *, runtime: float | None) -> None:
        """The attempt ended; ``result`` is what was stored (None when the
        delivery was handed back)."""


_NO_SCOPE = AttemptScope()
_NO_ATTEMPT = nullcontext(_NO_SCOPE)


class Instrumentation:
    """No-op instrumentation (the default without OpenTelemetry)."""

    enabled = False

    def on_publish(self, envelopes: Sequence[Envelope]) -> Sequence[Envelope]:
        """Return the envelopes to store (e.g. with trace headers added)."""
        return envelopes

    def published(self, envelopes: Sequence[Envelope]) -> None:
        """The envelopes are stored."""

    def attempt(
        self, envelope: Envelope, *, worker_id: str
    ) -> AbstractContextManager[AttemptScope]:
        """Wraps one execution attempt (the handler runs inside)."""
        return _NO_ATTEMPT

    def queue_depth(self, queue: str, depth: int) -> None:
        """A fresh reading of a queue's depth."""


NOOP = Instrumentation()


def default_instrumentation() -> Instrumentation:
    """OpenTelemetry when its SDK has a global tracer provider set, else no-op."""
    try:
        otel: Any = importlib.import_module("stem._otel")
    except ImportError:
        return NOOP
    found: Any = otel.auto_instrumentation()
    return found if isinstance(found, Instrumentation) else NOOP
