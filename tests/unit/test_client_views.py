"""The blocking and asyncio clients mirror stem.Client's producer and reader
calls: same names, parameters and docstrings, no call left out."""

from __future__ import annotations

import inspect

import pytest

import stem
import stem.asyncio
from stem import _blocking
from stem._canvas_client import Canvas, CanvasHandle
from stem._deadletters import DeadLetters
from stem._workflow_client import Workflows

#: Client coroutines that are not part of the producer/reader half
_RUNTIME = {"worker", "beat", "events", "add_finish_hook", "control", "bus"}

PAIRS = [
    (stem.Client, stem.BlockingClient, stem.asyncio.Client),
    (Canvas, _blocking.BlockingCanvas, stem.asyncio.AsyncCanvas),
    (CanvasHandle, _blocking.BlockingCanvasHandle, stem.asyncio.AsyncCanvasHandle),
    (Workflows, _blocking.BlockingWorkflows, stem.asyncio.AsyncWorkflows),
    (DeadLetters, _blocking.BlockingDeadLetters, stem.asyncio.AsyncDeadLetters),
]


def _coroutines(cls: type) -> dict[str, object]:
    return {
        name: fn
        for name, fn in vars(cls).items()
        if not name.startswith("_")
        and inspect.iscoroutinefunction(fn)
        and name not in _RUNTIME
    }


@pytest.mark.parametrize(("trio_cls", "blocking_cls", "asyncio_cls"), PAIRS)
def test_every_call_is_mirrored_with_its_signature_and_docstring(
    trio_cls: type, blocking_cls: type, asyncio_cls: type
) -> None:
    """Each public coroutine of the Trio class exists on both views with the
    same parameters and docstring; the asyncio one is a coroutine, the
    blocking one is not."""
    calls = _coroutines(trio_cls)
    assert calls, trio_cls
    for name, fn in calls.items():
        expected = list(inspect.signature(fn).parameters)[1:]  # without self
        for view, is_async in ((blocking_cls, False), (asyncio_cls, True)):
            mirrored = getattr(view, name, None)
            assert mirrored is not None, f"{view.__name__}.{name} is missing"
            assert inspect.iscoroutinefunction(mirrored) is is_async, (view, name)
            params = list(inspect.signature(mirrored).parameters)[1:]
            assert params == expected, (view, name)
            assert mirrored.__doc__ == fn.__doc__, (view, name)  # type: ignore[attr-defined]


def test_build_envelope_needs_no_connection() -> None:
    """build_envelope is checked and built in the caller's thread, before
    anything is opened; bad arguments raise there."""
    client = stem.BlockingClient("sqlite:////nonexistent/dir/x.db")
    envelope = client.build_envelope("a.task", {"n": 1}, queue="q", priority=3)
    assert (envelope.name, envelope.queue, envelope.priority) == ("a.task", "q", 3)
    with pytest.raises(stem.EncodeError):
        client.build_envelope("a.task", {"n": object()})
    assert "idle" in repr(client)


def test_a_call_joins_the_callers_trace() -> None:
    """An enqueue made under a span of the calling thread (a web request's)
    publishes with that span as parent, from either view."""
    import asyncio

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
        InMemorySpanExporter,
    )

    from stem._otel import OtelInstrumentation

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instr = OtelInstrumentation(tracer_provider=provider, metrics=False)
    tracer = provider.get_tracer("web")

    with (
        stem.BlockingClient(instrumentation=instr) as client,
        tracer.start_as_current_span("request blocking") as blocking_span,
    ):
        client.enqueue("a.task")

    async def from_asyncio() -> object:
        async with stem.asyncio.Client(instrumentation=instr) as aclient:
            with tracer.start_as_current_span("request asyncio") as span:
                await aclient.enqueue("a.task")
                return span

    asyncio_span = asyncio.run(from_asyncio())
    publishes = [s for s in exporter.get_finished_spans() if s.name == "stem.publish"]
    parents = [s.parent.span_id for s in publishes if s.parent is not None]
    assert parents == [
        blocking_span.get_span_context().span_id,
        asyncio_span.get_span_context().span_id,  # type: ignore[attr-defined]
    ]


def test_one_trio_thread_serves_every_client_of_the_process() -> None:
    """Two blocking clients and an asyncio one share one "stem-trio"
    thread; a client whose backend cannot open raises on its first call
    and leaves the thread serving the others."""
    import asyncio
    import threading

    first, second = stem.BlockingClient(), stem.BlockingClient()
    broken = stem.BlockingClient("nosuch://x")
    first.enqueue("a.task")
    second.enqueue("a.task")
    with pytest.raises(ValueError, match="nosuch"):
        broken.enqueue("a.task")

    async def from_asyncio() -> None:
        async with stem.asyncio.Client() as client:
            await client.enqueue("a.task")

    asyncio.run(from_asyncio())
    assert (first.queue_stats().pending, second.queue_stats().pending) == (1, 1)
    names = [t.name for t in threading.enumerate()]
    assert names.count("stem-trio") == 1
    first.close()
    second.close()
