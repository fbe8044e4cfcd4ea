"""Signals: the full set, typed payloads, connect/disconnect, and an event bus
that no handler can break or block."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
import trio.testing

import stem
from stem._signals import (
    SIGNALS,
    ControlEvent,
    PublishEvent,
    ScheduleEvent,
    TaskEvent,
    WorkerEvent,
    WorkflowEvent,
)

ISSUE_SIGNALS = {
    "publish_before": PublishEvent,
    "publish_after": PublishEvent,
    "task_received": TaskEvent,
    "task_prerun": TaskEvent,
    "task_postrun": TaskEvent,
    "task_progress": TaskEvent,
    "task_retry": TaskEvent,
    "task_succeeded": TaskEvent,
    "task_failed": TaskEvent,
    "task_revoked": TaskEvent,
    "task_dead_lettered": TaskEvent,
    "worker_init": WorkerEvent,
    "worker_ready": WorkerEvent,
    "worker_stopping": WorkerEvent,
    "worker_shutdown": WorkerEvent,
    "worker_heartbeat": WorkerEvent,
    "workflow_started": WorkflowEvent,
    "workflow_suspended": WorkflowEvent,
    "workflow_resumed": WorkflowEvent,
    "workflow_completed": WorkflowEvent,
    "workflow_failed": WorkflowEvent,
    "workflow_cancelled": WorkflowEvent,
    "schedule_due": ScheduleEvent,
    "schedule_dispatched": ScheduleEvent,
    "schedule_failed": ScheduleEvent,
    "control_received": ControlEvent,
    "control_completed": ControlEvent,
}


@stem.task("noop")
async def noop(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
    return int(args.get("n", 0))


def test_every_signal_of_the_issue_exists_with_its_payload_type() -> None:
    """Every signal the issue lists is registered with its typed payload and
    reachable as an attribute of ``app.signals``."""
    app = stem.App()
    for name, payload in ISSUE_SIGNALS.items():
        assert SIGNALS[name] is payload
        assert getattr(app.signals, name).payload_type is payload


def test_bad_subscriptions_fail_at_connect_time() -> None:
    """An unknown signal, a non-callable handler or filter and a bad buffer
    are refused with a clear error when connecting."""
    signals = stem.App().signals
    with pytest.raises(AttributeError, match="no signal named 'task_exploded'"):
        signals.task_exploded  # noqa: B018
    with pytest.raises(ValueError, match="no signal named"):
        signals.connect("nope", print)
    with pytest.raises(TypeError, match="must be callable"):
        signals.task_failed.connect(42)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="filter must be callable"):
        signals.task_failed.connect(print, filter=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="buffer must be an int >= 1"):
        signals.task_failed.connect(print, buffer=0)


async def test_sync_and_async_handlers_receive_typed_payloads(
    autojump_clock: Any,
) -> None:
    """A sync and an async handler both get a TaskEvent for each success, with
    the task id, name, queue, attempt and runtime."""
    app = stem.App(tasks=[noop])
    seen_sync: list[TaskEvent] = []
    seen_async: list[TaskEvent] = []

    async def on_async(event: TaskEvent) -> None:
        await trio.sleep(0)
        seen_async.append(event)

    app.signals.task_succeeded.connect(seen_sync.append)
    app.signals.task_succeeded.connect(on_async)
    async with stem.Client.in_memory(app=app) as client, client.worker():
        ids = [await client.enqueue("noop", args={"n": i}) for i in range(3)]
        for task_id in ids:
            await client.wait_for(task_id, timeout=10)
        await trio.testing.wait_all_tasks_blocked()
    for seen in (seen_sync, seen_async):
        assert sorted(e.task_id for e in seen) == sorted(ids)
        assert all(isinstance(e, TaskEvent) for e in seen)
        assert {e.name for e in seen} == {"noop"}
        assert {e.attempt for e in seen} == {1}
        assert all(e.runtime is not None and e.runtime >= 0 for e in seen)
        assert sorted(e.value for e in seen) == [0, 1, 2]


async def test_filter_decorator_and_disconnect(autojump_clock: Any) -> None:
    """A filter selects events, the decorator form keeps the function, and a
    disconnected handler hears nothing more."""
    app = stem.App(tasks=[noop])
    odd: list[int] = []
    published: list[PublishEvent] = []

    @app.signals.task_succeeded.connect(filter=lambda e: e.value % 2 == 1)
    def on_odd(event: TaskEvent) -> None:
        odd.append(event.value)

    assert callable(on_odd)
    sub = app.signals.publish_after.connect(published.append)
    async with stem.Client.in_memory(app=app) as client, client.worker():
        for i in range(4):
            await client.wait_for(
                await client.enqueue("noop", args={"n": i}), timeout=10
            )
        await trio.testing.wait_all_tasks_blocked()
        assert len(published) == 4
        app.signals.publish_after.disconnect(sub)
        app.signals.task_succeeded.disconnect(on_odd)
        await client.wait_for(await client.enqueue("noop", args={"n": 5}), timeout=10)
        await trio.testing.wait_all_tasks_blocked()
    assert sorted(odd) == [1, 3]
    assert len(published) == 4
    assert published[0].names == ("noop",)


async def test_raising_handler_is_reported_and_never_breaks_the_worker(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler (and a filter) raising on every event is logged and counted;
    every task still succeeds."""
    app = stem.App(tasks=[noop])

    def explode(event: TaskEvent) -> None:
        raise RuntimeError("handler bug")

    def bad_filter(event: TaskEvent) -> bool:
        raise ValueError("filter bug")

    app.signals.task_prerun.connect(explode)
    app.signals.task_postrun.connect(print, filter=bad_filter)
    with caplog.at_level(logging.ERROR, logger="stem.events"):
        async with stem.Client.in_memory(app=app) as client, client.worker():
            ids = [await client.enqueue("noop", args={"n": i}) for i in range(5)]
            results = [await client.wait_for(t, timeout=10) for t in ids]
            await trio.testing.wait_all_tasks_blocked()
            stats = client.bus.statistics()
    assert [r.state for r in results] == [stem.TaskState.SUCCEEDED] * 5
    assert stats.handler_errors == 10
    per_handler = {s.handler.rsplit(".", 1)[-1]: s for s in stats.subscriptions}
    assert per_handler["explode"].errors == 5
    assert per_handler["explode"].delivered == 0
    assert per_handler["print"].errors == 5
    assert "handler bug" in caplog.text
    assert "filter bug" in caplog.text


async def test_slow_handler_never_blocks_the_worker_and_drops_are_counted(
    autojump_clock: Any,
) -> None:
    """A handler stuck for an hour on its first event, with a buffer of 2,
    lets 20 tasks finish at once; the events it could not take are dropped and
    counted in the bus statistics."""
    app = stem.App(tasks=[noop])
    got: list[TaskEvent] = []

    async def stuck(event: TaskEvent) -> None:
        got.append(event)
        await trio.sleep(3600)

    app.signals.task_succeeded.connect(stuck, buffer=2)
    async with stem.Client.in_memory(app=app) as client, client.worker():
        start = trio.current_time()
        ids = [await client.enqueue("noop", args={"n": i}) for i in range(20)]
        results = [await client.wait_for(t, timeout=60) for t in ids]
        elapsed = trio.current_time() - start
        await trio.testing.wait_all_tasks_blocked()
        stats = client.bus.statistics()
    assert all(r.state is stem.TaskState.SUCCEEDED for r in results)
    assert elapsed < 60
    assert len(got) == 1
    (sub,) = [s for s in stats.subscriptions if s.signal == "task_succeeded"]
    assert sub.buffered == 2
    assert sub.dropped == 17
    assert stats.dropped == 17


async def test_worker_lifecycle_signals_in_order(autojump_clock: Any) -> None:
    """A worker emits init, ready, heartbeats, stopping and shutdown (in that
    order of time; each subscription is delivered on its own), with its id,
    queues and concurrency."""
    app = stem.App(tasks=[noop])
    events: list[WorkerEvent] = []
    for name in (
        "worker_init",
        "worker_ready",
        "worker_heartbeat",
        "worker_stopping",
        "worker_shutdown",
    ):
        app.signals.connect(name, events.append)
    async with stem.Client.in_memory(app=app) as client:
        async with client.worker(
            concurrency=3, queues=["a", "b"], heartbeat_interval=1.0
        ) as worker:
            # In-process backends beat when the worker's counts change.
            await trio.sleep(1.5)
            await client.wait_for(await client.enqueue("noop", queue="a"), timeout=5)
            await trio.sleep(1.5)
        await trio.testing.wait_all_tasks_blocked()
    kinds = [e.signal for e in events]
    assert kinds.count("worker_heartbeat") >= 2
    once = {e.signal: e.at for e in events if e.signal != "worker_heartbeat"}
    assert len(once) == 4
    assert (
        once["worker_init"]
        <= once["worker_ready"]
        < once["worker_stopping"]
        <= once["worker_shutdown"]
    )
    assert {e.worker_id for e in events} == {worker.config.worker_id}
    assert events[0].queues == ("a", "b")
    assert events[0].concurrency == 3


async def test_task_failure_signals_retry_failed_and_dead_lettered(
    autojump_clock: Any,
) -> None:
    """A task failing past its retries emits task_retry then task_failed with
    the error; an unknown task name emits task_dead_lettered; a revoked task
    emits task_revoked."""

    @stem.task("broken", max_retries=1, retry_policy=stem.RetryPolicy(jitter=False))
    async def broken(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        raise KeyError("nope")

    app = stem.App(tasks=[broken, noop])
    events: list[TaskEvent] = []
    for name in ("task_retry", "task_failed", "task_dead_lettered", "task_revoked"):
        app.signals.connect(name, events.append)
    async with stem.Client.in_memory(app=app) as client, client.worker():
        failed = await client.enqueue("broken")
        await client.wait_for(failed, timeout=60)
        ghost = await client.enqueue("no.such.task")
        await client.wait_for(ghost, timeout=60)
        later = await client.enqueue("noop", countdown=30)
        await client.revoke(later)
        await trio.sleep(31)
        await trio.testing.wait_all_tasks_blocked()
    by_signal = {(e.signal, e.task_id): e for e in events}
    retry = by_signal["task_retry", failed]
    assert retry.attempt == 1
    assert retry.retry_in == pytest.approx(1.0)
    assert retry.error is not None and retry.error.type == "KeyError"
    final = by_signal["task_failed", failed]
    assert final.attempt == 2
    assert final.reason == "max-retries-exhausted"
    assert by_signal["task_dead_lettered", ghost].reason == "unregistered-task"
    assert by_signal["task_revoked", later].reason == "revoked"
