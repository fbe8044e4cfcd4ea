"""Events as log records (stem/_eventcodec.py) and the relay that writes
them only while someone listens (stem/actors/_eventrelay.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

import stem
from stem import DecodeError, ErrorInfo
from stem._eventcodec import (
    MAX_VALUE_BYTES,
    RELAYED_SIGNALS,
    decode_event,
    encode_event,
)
from stem._progress import Progress
from stem._signals import SIGNALS, ScheduleEvent, TaskEvent, WorkerEvent
from stem.actors._eventbus import EventBus
from stem.actors._eventrelay import EventRelay
from stem.actors._mailbox import Mailbox
from stem.adapters.memory._events import MemoryEvents


def test_a_task_event_round_trips_with_its_origin() -> None:
    """A task event with an error, a value and timings decodes back equal,
    carrying the origin it was written with."""
    event = TaskEvent(
        signal="task_failed",
        at=1700000000.5,
        task_id="t1",
        name="mail.send",
        queue="mail",
        attempt=3,
        worker_id="w",
        error=ErrorInfo(type="ValueError", message="bad", traceback="tb"),
        value={"a": [1, 2]},
        runtime=0.25,
        progress=Progress(done=3, total=10, info={"stage": "b"}, at=5.0),
    )
    back = decode_event(encode_event(event, origin="host:1:abc"))
    assert back == TaskEvent(**{**_fields(event), "origin": "host:1:abc"})


def test_worker_and_schedule_events_round_trip() -> None:
    """Tuples and optional fields of other payload types survive the trip."""
    worker = WorkerEvent(
        signal="worker_ready", at=1.0, worker_id="w", queues=("a", "b"), active=2
    )
    fired = ScheduleEvent(
        signal="schedule_dispatched", at=2.0, entry="e", fire_time=3.0, task_id="t"
    )
    for event in (worker, fired):
        assert decode_event(encode_event(event, origin="o")).origin == "o"
        assert _fields(decode_event(encode_event(event, origin="o"))) == {
            **_fields(event),
            "origin": "o",
        }


def test_a_large_value_is_left_out() -> None:
    """A task value over MAX_VALUE_BYTES of JSON travels as None."""
    event = TaskEvent(
        signal="task_succeeded", at=1.0, task_id="t", name="n", queue="q",
        attempt=1, value="x" * (MAX_VALUE_BYTES + 10),
    )  # fmt: skip
    assert decode_event(encode_event(event, origin="o")).value is None


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\xff\xfe",
        b"null",
        b"[1]",
        b'{"signal": "nope", "at": 1}',
        b'{"signal": "task_failed", "at": "yesterday"}',
        b'{"signal": "task_failed", "at": 1, "task_id": 5, "name": "n", '
        b'"queue": "q", "attempt": 1}',
        b'{"signal": "task_failed", "at": 1, "task_id": "t", "name": "n", '
        b'"queue": "q", "attempt": true}',
        b'{"signal": "task_failed", "at": 1, "task_id": "t", "name": "n", '
        b'"queue": "q", "attempt": 1, "error": {"type": 1}}',
        b'{"signal": "worker_ready", "at": 1, "worker_id": "w", "queues": "ab"}',
        b'{"signal": "task_failed", "at": 1e999}',
    ],
)
def test_records_that_are_not_events_raise_decode_error(body: bytes) -> None:
    """Anything else in the log is refused with DecodeError, nothing else."""
    with pytest.raises(DecodeError):
        decode_event(body)


@given(
    signal=st.sampled_from(sorted(SIGNALS)),
    fields=st.dictionaries(
        st.sampled_from(
            ["at", "task_id", "name", "queue", "attempt", "error", "worker_id",
             "queues", "origin", "value", "runtime", "entry", "fire_time"]
        ),
        st.one_of(
            st.none(), st.booleans(), st.integers(), st.floats(), st.text(),
            st.lists(st.text(), max_size=3), st.dictionaries(st.text(), st.text()),
        ),
    ),
)  # fmt: skip
def test_decoding_is_total(signal: str, fields: dict[str, Any]) -> None:
    """Any JSON object naming a signal decodes or raises DecodeError."""
    body = json.dumps({"signal": signal, **fields}, allow_nan=True).encode()
    try:
        event = decode_event(body)
    except DecodeError:
        return
    assert event.signal == signal


def test_relayed_signals_leave_out_producer_and_duplicate_signals() -> None:
    """Task, worker, workflow and schedule signals are relayed; publish
    hooks and task_postrun stay in their process."""
    assert "task_succeeded" in RELAYED_SIGNALS
    assert "worker_heartbeat" in RELAYED_SIGNALS
    assert "schedule_dispatched" in RELAYED_SIGNALS
    assert "workflow_completed" in RELAYED_SIGNALS
    assert "publish_after" not in RELAYED_SIGNALS
    assert "task_postrun" not in RELAYED_SIGNALS


def _done(task_id: str) -> TaskEvent:
    return TaskEvent(
        signal="task_succeeded", at=stem.now(), task_id=task_id, name="n",
        queue="q", attempt=1,
    )  # fmt: skip


async def test_the_relay_writes_only_while_someone_listens(
    autojump_clock: Any,
) -> None:
    """With nobody listening the relay holds no subscription (the bus's
    wants() is False, so workers build no events) and the log stays empty;
    once a listener registers, the relay subscribes within its presence
    interval and what is emitted reaches the log in order, with the relay's
    origin; after the listener leaves it unsubscribes again."""
    bus = EventBus()
    log = MemoryEvents()
    relay = EventRelay(bus=bus, store=log, origin="me", presence_interval=5.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(bus.run)
        await nursery.start(relay.run, Mailbox[Any](10, name="relay"))
        assert not bus.wants("task_succeeded")
        await trio.sleep(20)
        assert await log.last_cursor() == 0
        await log.listen("test", ttl=600)
        await trio.sleep(5.5)
        assert bus.wants("task_succeeded")
        assert relay.relay_statistics().listening
        for n in range(3):
            bus.emit(_done(f"t{n}"))
        await trio.sleep(0.1)
        records = [decode_event(r.body) for r in await log.read(0, limit=100)]
        assert [e.task_id for e in records] == ["t0", "t1", "t2"]  # type: ignore[attr-defined]
        assert {e.origin for e in records} == {"me"}
        assert relay.relay_statistics().relayed == 3
        await log.unlisten("test")
        await trio.sleep(11)
        assert not bus.wants("task_succeeded")
        bus.emit(_done("unseen"))
        assert await log.last_cursor() == 3
        nursery.cancel_scope.cancel()


async def test_a_relay_starts_subscribed_when_a_listener_waits() -> None:
    """A relay started while someone listens is subscribed by the time it
    reports started, so the node's first event (a worker coming online) is
    relayed."""
    bus = EventBus()
    log = MemoryEvents()
    await log.listen("early", ttl=600)
    relay = EventRelay(bus=bus, store=log, origin="me")
    async with trio.open_nursery() as nursery:
        await nursery.start(bus.run)
        await nursery.start(relay.run, Mailbox[Any](10, name="relay"))
        bus.emit(WorkerEvent(signal="worker_ready", at=stem.now(), worker_id="w"))
        with trio.fail_after(5):
            while not await log.read(0):
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()


def _fields(event: Any) -> dict[str, Any]:
    import attrs

    return attrs.asdict(event, recurse=False)
