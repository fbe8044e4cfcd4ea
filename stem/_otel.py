"""OpenTelemetry tracing and metrics for Stem (the ``otel`` extra).

Spans follow the messaging semantic conventions:

- ``stem.publish`` (PRODUCER), one per envelope, from ``client.publish`` until
  the envelope is stored; its context is written into the envelope's headers
  as W3C ``traceparent``/``tracestate``.
- ``stem.run <task name>`` (CONSUMER), one per execution attempt, a child of
  the context found in the envelope's headers. Retries keep the headers and
  canvas follow-ups copy them, so every attempt, chain link and chord
  callback joins the producer's trace; an envelope published while a task
  runs (without its own ``traceparent``) becomes a child of that run.

Attributes: ``messaging.system="stem"``, ``messaging.destination.name``
(queue), ``messaging.message.id`` (task id), ``messaging.operation``
(``publish``/``process``), ``stem.task.name``, ``stem.task.id``,
``stem.task.attempt``, ``stem.queue``, ``stem.worker.id``, and
``stem.task.state`` once known. A failed or retried attempt sets status
ERROR and records an ``exception`` event from ``result.error``.

Metrics are in :mod:`stem._metrics`.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from contextvars import Token
from typing import Any

import trio
from opentelemetry import context as otel_context
from opentelemetry import metrics as otel_metrics
from opentelemetry import trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import Span, SpanKind, StatusCode, TracerProvider
from opentelemetry.trace.propagation.tracecontext import (
    TraceContextTextMapPropagator,
)

from ._clock import now
from ._envelope import Envelope
from ._instrument import AttemptScope, Instrumentation
from ._logging import TaskLogContext, bind_task, unbind_task
from ._metrics import Key, StemMetrics
from ._redact import redact_text
from ._result import TaskResult
from ._signals import Signals
from ._states import TaskState
from ._version import __version__

#: The W3C trace-context header names carried in envelope headers.
TRACE_HEADERS = ("traceparent", "tracestate")

_PROPAGATOR = TraceContextTextMapPropagator()
_MAX_PENDING = 10_000  # publish spans awaiting `published` (bounded)
_BATCH_KEY = "\x00batch:"  # + first task id: a pending batch span


def _state_name(result: TaskResult | None) -> str:
    return "handed_back" if result is None else result.state.value


def _record_escape(span: Span, exc: BaseException) -> None:
    """An exception left the attempt before its outcome was reported."""
    if isinstance(exc, trio.Cancelled):
        span.set_attribute("stem.task.state", "cancelled")
        return
    text = redact_text(str(exc))
    span.record_exception(
        exc,
        attributes={
            "exception.message": text,
            "exception.stacktrace": redact_text(
                "".join(traceback.format_exception(exc))
            ),
        },
    )
    span.set_status(StatusCode.ERROR, f"{type(exc).__name__}: {text}")


class _Attempt(AttemptScope):
    """One attempt's span and metrics, and the context manager around it (a
    class, not a generator: this runs for every task)."""

    __slots__ = (
        "_attrs",
        "_envelope",
        "_instr",
        "_log",
        "_span",
        "_token",
        "_worker",
        "done",
    )

    def __init__(
        self, instr: OtelInstrumentation, envelope: Envelope, worker_id: str
    ) -> None:
        self._instr = instr
        self._envelope = envelope
        self._worker = worker_id
        self.done = False
        self._attrs: Key | None = None
        self._span: Span | None = None
        self._token: Token[otel_context.Context] | None = None
        self._log: Token[TaskLogContext | None] | None = None

    def __enter__(self) -> _Attempt:
        envelope, instr = self._envelope, self._instr
        if instr.metrics is not None:
            due = max(envelope.enqueued_at, envelope.not_before or 0.0)
            self._attrs = instr.metrics.on_started(envelope, now() - due)
        if instr.tracer is not None:
            self._span = span = instr.tracer.start_span(
                f"stem.run {envelope.name}",
                context=_PROPAGATOR.extract(envelope.headers),
                kind=SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "stem",
                    "messaging.operation": "process",
                    "messaging.operation.type": "process",
                    "messaging.destination.name": envelope.queue,
                    "messaging.message.id": envelope.id,
                    "stem.task.id": envelope.id,
                    "stem.task.name": envelope.name,
                    "stem.task.attempt": envelope.attempt,
                    "stem.queue": envelope.queue,
                    "stem.worker.id": self._worker,
                },
            )
            self._token = otel_context.attach(trace.set_span_in_context(span))
        self._log = bind_task(envelope, self._worker)
        return self

    def outcome(self, result: TaskResult | None, *, runtime: float | None) -> None:
        self.done = True
        if self._attrs is not None and self._instr.metrics is not None:
            self._instr.metrics.on_outcome(self._attrs, result, runtime)
        span = self._span
        if span is None or not span.is_recording():
            return
        span.set_attribute("stem.task.state", _state_name(result))
        if runtime is not None:
            span.set_attribute("stem.task.runtime", runtime)
        if result is None:
            return
        if result.state is TaskState.RETRYING and "retry_at" in result.meta:
            span.set_attribute("stem.task.retry_at", float(result.meta["retry_at"]))
        if result.state is TaskState.FAILED and "reason" in result.meta:
            span.set_attribute("stem.task.failure_reason", str(result.meta["reason"]))
        if result.state is TaskState.REVOKED and "reason" in result.meta:
            span.set_attribute("stem.task.revoke_reason", str(result.meta["reason"]))
        error = result.error
        if result.state in (TaskState.FAILED, TaskState.RETRYING) and error:
            message = redact_text(error.message)
            span.set_status(StatusCode.ERROR, f"{error.type}: {message}")
            span.add_event(
                "exception",
                {
                    "exception.type": error.type,
                    "exception.message": message,
                    "exception.stacktrace": redact_text(error.traceback or ""),
                    "exception.escaped": result.state is TaskState.FAILED,
                },
            )

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: Any,
    ) -> None:
        span = self._span
        try:
            if exc is not None and span is not None and not self.done:
                _record_escape(span, exc)
        finally:
            if self._log is not None:
                unbind_task(self._log)
            if self._token is not None:
                otel_context.detach(self._token)
            if span is not None:
                span.end()
            if self._attrs is not None and self._instr.metrics is not None:
                self._instr.metrics.on_ended(self._attrs)


class OtelInstrumentation(Instrumentation):
    """Traces and metrics through OpenTelemetry.

    ``tracer_provider``/``meter_provider`` default to the global ones; pass
    explicit providers (tests, several pipelines in one process) to use
    those instead. ``tracing=False`` or ``metrics=False`` turns a half off.
    Call :meth:`watch` with the app's signals to also count revocations and
    dead letters that happen before an attempt starts (``stem worker`` and
    ``stem.main`` do this).
    """

    enabled = True

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        tracing: bool = True,
        metrics: bool = True,
    ) -> None:
        self.tracer = (
            trace.get_tracer("stem", __version__, tracer_provider=tracer_provider)
            if tracing
            else None
        )
        self.metrics = StemMetrics(meter_provider) if metrics else None
        self._pending: dict[str, Span] = {}

    # -- publishing -------------------------------------------------------------

    def on_publish(self, envelopes: Sequence[Envelope]) -> Sequence[Envelope]:
        tracer = self.tracer
        if tracer is None:
            return envelopes
        out: list[Envelope] = []
        batch_context = None
        if (
            len(envelopes) > 1
            and not trace.get_current_span().get_span_context().is_valid
        ):
            # One call publishing several envelopes with no trace around it (a
            # group, a chord's members, a bulk enqueue) is one operation: a
            # batch span parents the envelopes that bring no context of their own.
            batch = tracer.start_span(
                "stem.publish",
                kind=SpanKind.PRODUCER,
                attributes={
                    "messaging.system": "stem",
                    "messaging.operation": "publish",
                    "messaging.operation.type": "publish",
                    "messaging.batch.message_count": len(envelopes),
                },
            )
            batch_context = trace.set_span_in_context(batch)
            self._remember(_BATCH_KEY + envelopes[0].id, batch)
        for env in envelopes:
            parent = (
                _PROPAGATOR.extract(env.headers)
                if "traceparent" in env.headers
                else batch_context  # None: the current context (a running task)
            )
            span = tracer.start_span(
                "stem.publish",
                context=parent,
                kind=SpanKind.PRODUCER,
                attributes={
                    "messaging.system": "stem",
                    "messaging.operation": "publish",
                    "messaging.operation.type": "publish",
                    "messaging.destination.name": env.queue,
                    "messaging.message.id": env.id,
                    "stem.task.id": env.id,
                    "stem.task.name": env.name,
                    "stem.task.attempt": env.attempt,
                    "stem.queue": env.queue,
                },
            )
            headers = {k: v for k, v in env.headers.items() if k not in TRACE_HEADERS}
            _PROPAGATOR.inject(headers, context=trace.set_span_in_context(span))
            out.append(env.with_headers(headers))
            self._remember(env.id, span)
        return out

    def _remember(self, task_id: str, span: Span) -> None:
        previous = self._pending.pop(task_id, None)
        if previous is not None:
            previous.end()
        while len(self._pending) >= _MAX_PENDING:
            # publishes that failed never reach `published`: end their spans
            oldest = next(iter(self._pending))
            stale = self._pending.pop(oldest)
            stale.set_status(StatusCode.ERROR, "publish not confirmed")
            stale.end()
        self._pending[task_id] = span

    def published(self, envelopes: Sequence[Envelope]) -> None:
        if self.metrics is not None:
            self.metrics.on_published(envelopes)
        pending = self._pending
        if not pending:
            return
        for env in envelopes:
            span = pending.pop(env.id, None)
            if span is not None:
                span.end()
        if len(envelopes) > 1:
            batch = pending.pop(_BATCH_KEY + envelopes[0].id, None)
            if batch is not None:
                batch.end()

    # -- executing --------------------------------------------------------------

    def attempt(self, envelope: Envelope, *, worker_id: str) -> _Attempt:
        return _Attempt(self, envelope, worker_id)

    def queue_depth(self, queue: str, depth: int) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth(queue, depth)

    # -- signals ------------------------------------------------------------------

    def watch(self, signals: Signals) -> None:
        """Count revocations and pre-attempt dead letters from ``signals``."""
        if self.metrics is not None:
            self.metrics.watch(signals)


def trace_headers(headers: dict[str, str]) -> dict[str, str]:
    """The trace-context subset of ``headers`` (for copying into follow-ups)."""
    return {k: headers[k] for k in TRACE_HEADERS if k in headers}


def _is_real(provider: Any) -> bool:
    """Not one of the API's stand-ins (proxy before an SDK is set, no-op)."""
    return provider is not None and type(provider).__name__ not in (
        "ProxyTracerProvider",
        "NoOpTracerProvider",
        "_ProxyMeterProvider",
        "NoOpMeterProvider",
    )


def tracing_configured() -> bool:
    """Whether OpenTelemetry's global tracer provider is a real SDK one."""
    return _is_real(trace.get_tracer_provider())


def auto_instrumentation() -> OtelInstrumentation | None:
    """An instrumentation on the global providers when OpenTelemetry's global
    tracer (or meter) provider is a real SDK one, else None (Stem stays
    no-op and costs nothing)."""
    tracing = tracing_configured()
    metrics = _is_real(otel_metrics.get_meter_provider())
    if not tracing and not metrics:
        return None
    return OtelInstrumentation(tracing=tracing, metrics=metrics)
