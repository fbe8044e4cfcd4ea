"""The pure redelivery rules every Broker backend shares (stem._redelivery)."""

from __future__ import annotations

from typing import NamedTuple

import attrs

from stem import Envelope, TaskState
from stem._codec import decode_envelope
from stem._redelivery import (
    capped,
    due_at,
    filed,
    fresh_for_replay,
    replayed_result,
    requeue_at,
    select_for_purge,
    select_for_replay,
    wanted,
)
from stem.contracts import DeadLetter, Delivery


def env(**fields: object) -> Envelope:
    return Envelope(id="t1", name="job", **fields)  # type: ignore[arg-type]


def dead(task_id: str, dead_at: float, *, decodable: bool = True) -> DeadLetter:
    return DeadLetter(
        task_id=task_id,
        name="job",
        queue="q",
        reason="max-retries-exhausted",
        error=None,
        attempts=1,
        dead_at=dead_at,
        envelope=Envelope(id=task_id, name="job", queue="q") if decodable else None,
        raw=None if decodable else b"{broken",
    )


def delivery(**fields: object) -> Delivery:
    base: dict[str, object] = {
        "receipt": "r",
        "queue": "q",
        "task_id": "t1",
        "envelope": None,
        "lease_until": 0.0,
    }
    return Delivery(**{**base, **fields})  # type: ignore[arg-type]


class Row(NamedTuple):
    seq: int
    task_id: str
    dead_at: float
    envelope: str | None


ENTRIES = [dead("a", 10.0), dead("b", 20.0, decodable=False), dead("c", 30.0)]


def ids(entries: list[DeadLetter]) -> list[str]:
    return [entry.task_id for entry in entries]


# ----------------------------------------------------------- nack


def test_requeue_waits_the_delay_and_never_goes_back_in_time() -> None:
    """A requeued message is claimable after the delay; a negative delay is none."""
    assert requeue_at(100.0, delay=5.0, envelope=None) == 105.0
    assert requeue_at(100.0, delay=-3.0, envelope=None) == 100.0


def test_requeue_honours_the_replacing_envelopes_not_before() -> None:
    """A retry's envelope is not claimable before its not_before, whichever is
    later of that and the delay."""
    assert requeue_at(100.0, delay=0.0, envelope=env(not_before=110.0)) == 110.0
    assert requeue_at(100.0, delay=20.0, envelope=env(not_before=110.0)) == 120.0
    assert requeue_at(100.0, delay=0.0, envelope=env(not_before=90.0)) == 100.0
    assert requeue_at(100.0, delay=1.0, envelope=env()) == 101.0


# ----------------------------------------------------------- dead_letter


def test_filed_keeps_a_complete_entry_as_it_is() -> None:
    """An entry naming its queue and carrying its envelope is stored unchanged."""
    entry = dead("a", 1.0)
    assert filed(entry, delivery(envelope=entry.envelope)) is entry


def test_filed_takes_the_deliverys_queue_when_the_entry_names_none() -> None:
    """An entry without a queue is filed under the queue it was delivered from."""
    entry = attrs.evolve(dead("a", 1.0), queue="")
    assert filed(entry, delivery(queue="mail")).queue == "mail"


def test_filed_keeps_the_body_of_a_message_the_entry_leaves_out() -> None:
    """An entry with neither envelope nor raw body keeps the delivery's body
    (its raw bytes, or the encoded envelope), so nothing is lost."""
    bare = attrs.evolve(dead("a", 1.0), envelope=None, raw=None)
    assert filed(bare, delivery(raw=b"{broken")).raw == b"{broken"
    message = env(queue="q")
    kept = filed(bare, delivery(envelope=message)).raw
    assert kept is not None and decode_envelope(kept) == message
    assert filed(bare, delivery()).raw is None


# ----------------------------------------------------------- replay and purge


def test_capped_limit_is_none_or_not_negative() -> None:
    """A limit is None (no limit) or a count of at least zero."""
    assert capped(None) is None
    assert capped(3) == 3
    assert capped(-2) == 0


def test_wanted_applies_task_ids_and_since() -> None:
    """An entry passes when its id is asked for (or none are named) and it died
    at or after ``since``."""
    entry = dead("a", 10.0)
    assert wanted(entry, task_ids=None, since=None)
    assert wanted(entry, task_ids={"a"}, since=10.0)
    assert not wanted(entry, task_ids={"b"}, since=None)
    assert not wanted(entry, task_ids=None, since=10.5)
    assert not wanted(entry, task_ids=(), since=None)


def test_replay_selection_skips_undecodable_and_keeps_order() -> None:
    """A replay takes decodable entries only, oldest first as given."""
    assert ids(select_for_replay(ENTRIES)) == ["a", "c"]


def test_replay_selection_filters_before_limiting() -> None:
    """``limit`` counts entries that pass the filters, not the ones skipped."""
    assert ids(select_for_replay(ENTRIES, since=15.0)) == ["c"]
    assert ids(select_for_replay(ENTRIES, task_ids=["c", "b"])) == ["c"]
    assert ids(select_for_replay(ENTRIES, task_ids=["b", "c"], limit=1)) == ["c"]
    assert ids(select_for_replay(ENTRIES, limit=1)) == ["a"]


def test_replay_selection_with_zero_or_negative_limit_takes_nothing() -> None:
    """A limit of zero or below selects no entry."""
    assert select_for_replay(ENTRIES, limit=0) == []
    assert select_for_replay(ENTRIES, limit=-1) == []


def test_replay_selection_reads_a_backends_rows() -> None:
    """The selection works on a backend's own rows (a NULL envelope column is
    undecodable) and returns those rows."""
    rows = [Row(1, "a", 10.0, "{}"), Row(2, "b", 20.0, None), Row(3, "c", 5.0, "{}")]
    assert select_for_replay(rows, since=6.0) == [rows[0]]
    assert select_for_purge(rows, since=6.0) == rows[:2]


def test_replay_selection_accepts_any_iterable_of_ids() -> None:
    """``task_ids`` may be a one-shot iterator: it is read once."""
    assert ids(select_for_replay(ENTRIES, task_ids=iter(["c"]))) == ["c"]


def test_purge_selection_includes_undecodable_entries() -> None:
    """A purge deletes undecodable entries too, honouring since and limit."""
    assert ids(select_for_purge(ENTRIES)) == ["a", "b", "c"]
    assert ids(select_for_purge(ENTRIES, since=15.0, limit=1)) == ["b"]
    assert select_for_purge(ENTRIES, limit=-5) == []


def test_fresh_for_replay_is_a_new_first_attempt() -> None:
    """A replayed envelope keeps its id, name, args and other meta, restarts at
    attempt 1 without history, and is enqueued at the replay time."""
    old = env(
        args={"x": 1},
        queue="q",
        attempt=4,
        max_retries=3,
        not_before=50.0,
        enqueued_at=10.0,
        meta={"history": [{"attempt": 1}], "unique_key": "k"},
    )
    fresh = fresh_for_replay(old, queue="q", at=100.0)
    assert (fresh.id, fresh.name, fresh.args) == (old.id, old.name, old.args)
    assert fresh.attempt == 1
    assert fresh.max_retries == 3
    assert fresh.meta == {"unique_key": "k"}
    assert fresh.enqueued_at == 100.0
    assert fresh.not_before is None
    assert due_at(fresh, 100.0) == 100.0
    assert old.meta["history"] == [{"attempt": 1}], "the old envelope is unchanged"


def test_fresh_for_replay_with_delay_is_not_due_before_it() -> None:
    """A replay with a delay is due ``delay`` seconds after the replay; a zero
    or negative delay makes it due at once."""
    fresh = fresh_for_replay(env(), queue="default", at=100.0, delay=30.0)
    assert fresh.not_before == 130.0
    assert due_at(fresh, 100.0) == 130.0
    for delay in (0.0, -5.0):
        now = fresh_for_replay(env(), queue="default", at=100.0, delay=delay)
        assert now.not_before is None
        assert due_at(now, 100.0) == 100.0


def test_fresh_for_replay_goes_to_the_dead_letters_queue() -> None:
    """A replay puts the task on the queue whose dead letters it came from."""
    fresh = fresh_for_replay(env(queue="elsewhere"), queue="q", at=0.0)
    assert fresh.queue == "q"


def test_due_at_never_precedes_the_store_time() -> None:
    """A message is due at its not_before, or when stored if that has passed."""
    assert due_at(env(not_before=150.0), 100.0) == 150.0
    assert due_at(env(not_before=50.0), 100.0) == 100.0
    assert due_at(env(), 100.0) == 100.0


def test_replayed_result_is_queued_attempt_one() -> None:
    """A replayed task's record is QUEUED at attempt 1 and marked replayed."""
    record = replayed_result("t1", name="job", queue="q", at=5.0)
    assert record.state is TaskState.QUEUED
    assert (record.task_id, record.name, record.queue) == ("t1", "job", "q")
    assert record.attempt == 1
    assert record.updated_at == 5.0
    assert record.meta == {"replayed": True}
