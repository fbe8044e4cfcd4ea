"""RUNNING records are stored once an attempt has run for
``running_record_after``; a shorter attempt is stored once, with its outcome."""

from __future__ import annotations

from typing import Any

import pytest
import trio

import stem
from stem._states import TaskState
from stem.actors._broker import StoreResults
from stem.actors._outbox import Outbox
from stem.actors._startrecords import StartRecords


def _env(task_id: str) -> stem.Envelope:
    return stem.Client.in_memory().build_envelope("x", {"n": 1}, task_id=task_id)


async def test_only_attempts_still_running_when_due_are_recorded(
    autojump_clock: Any,
) -> None:
    """A short attempt's record is never sent; a long one's is sent once,
    ``after`` seconds in, with its start time; records due together go in
    one message per TTL."""
    sent: list[tuple[float, StoreResults]] = []
    starts = StartRecords(
        send=lambda msg: sent.append((trio.current_time(), msg)),
        after=0.05,
        worker_id="w1",
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(starts.send_forever)
        began = trio.current_time()
        starts.started("r-short", _env("short"), 100.0, 60.0)
        starts.started("r-long", _env("long"), 100.0, 60.0)
        starts.started("r-other-ttl", _env("other"), 100.0, None)
        await trio.sleep(0.01)
        starts.ended("r-short")
        await trio.sleep(0.1)
        starts.ended("r-long")
        starts.ended("r-other-ttl")
        await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
    assert [round(at - began, 3) for at, _ in sent] == [0.05, 0.05]
    by_ttl = {msg.ttl: msg.results for _, msg in sent}
    assert [r.task_id for r in by_ttl[60.0]] == ["long"]
    assert [r.task_id for r in by_ttl[None]] == ["other"]
    record = by_ttl[60.0][0]
    assert record.state is TaskState.RUNNING
    assert record.updated_at == 100.0
    assert record.meta["worker_id"] == "w1"
    assert record.meta["args"] == {"n": 1}


async def test_zero_records_every_start_at_once(autojump_clock: Any) -> None:
    """``after=0`` sends the RUNNING record when the attempt starts."""
    sent: list[StoreResults] = []
    starts = StartRecords(send=sent.append, after=0.0, worker_id="w1")
    starts.started("r", _env("t"), 5.0, None)
    assert [r.task_id for msg in sent for r in msg.results] == ["t"]


async def test_a_worker_stores_running_only_for_longer_attempts(
    autojump_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end on the memory backend: a task that blocks is RUNNING in
    the store after ``running_record_after``; a quick one's RUNNING record
    is never sent to the broker actor."""
    release = trio.Event()
    states: list[TaskState] = []
    running_sent: list[str] = []
    tell = Outbox.tell

    def recording_tell(self: Outbox, msg: Any) -> None:
        if isinstance(msg, StoreResults):
            running_sent.extend(
                r.task_id for r in msg.results if r.state is TaskState.RUNNING
            )
        tell(self, msg)

    monkeypatch.setattr(Outbox, "tell", recording_tell)

    @stem.task("slow")
    async def slow(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
        await release.wait()
        return 1

    @stem.task("quick")
    async def quick(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
        return 2

    client = stem.Client.in_memory(app=stem.App([slow, quick]))
    async with client, client.worker(concurrency=2, running_record_after=0.2):
        slow_id = await client.enqueue("slow")
        await trio.sleep(0.1)
        got = await client.get(slow_id)
        assert got is not None
        states.append(got.state)
        await trio.sleep(0.2)
        got = await client.get(slow_id)
        assert got is not None
        states.append(got.state)
        release.set()
        done = await client.wait_for(slow_id, timeout=5)
        quick_id = await client.enqueue("quick")
        quick_done = await client.wait_for(quick_id, timeout=5)
    assert states == [TaskState.QUEUED, TaskState.RUNNING]
    assert done.value == 1 and quick_done.value == 2
    assert running_sent == [slow_id]
