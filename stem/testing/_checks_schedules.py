"""Contract checks for the schedule store (beat): add/update/remove/list/get,
the compare-and-set of the last fire, version conflicts and change wake-ups.

See :mod:`stem.testing._checks_broker` for the conventions.
"""

from __future__ import annotations

import trio

import stem
from stem.contracts import (
    ScheduleConflict,
    ScheduleExists,
    ScheduleNotFound,
    ScheduleStore,
)

from ._harness import Harness
from ._harness import raises as _raises

DEF_A = {"name": "a", "every": 60.0, "task": {"name": "t", "args": {"n": 1}}}
DEF_B = {"name": "b", "cron": "0 9 * * *", "task": {"name": "t", "args": {}}}


async def check_schedules_add_get_list_remove(h: Harness) -> None:
    """Entries are stored at version 1, read back whole, listed by name and
    removed once."""
    store = h.backend.schedules
    assert isinstance(store, ScheduleStore)
    at = stem.now()
    added = await store.add("b", DEF_B)
    await store.add("a", DEF_A, enabled=False)
    assert added.version == 1
    assert added.enabled is True
    assert added.definition == DEF_B
    assert added.last_fire is None
    assert added.fire_count == 0
    assert abs(added.created_at - at) <= 1.0
    assert added.changed_at == added.created_at
    got = await store.get("a")
    assert got is not None
    assert (got.name, got.enabled, got.version, got.definition) == (
        "a",
        False,
        1,
        DEF_A,
    )
    assert [r.name for r in await store.list()] == ["a", "b"]
    with _raises(ScheduleExists):
        await store.add("a", DEF_B)
    assert (await store.get("a")).definition == DEF_A  # type: ignore[union-attr]
    assert await store.remove("a") is True
    assert await store.remove("a") is False
    assert await store.get("a") is None
    assert [r.name for r in await store.list()] == ["b"]


async def check_schedules_update_keeps_fire_record(h: Harness) -> None:
    """update changes definition and enabled, bumps the version and changed_at,
    keeps the fire record, and leaves an unchanged entry untouched."""
    store = h.backend.schedules
    await store.add("a", DEF_A)
    fired = await store.record_fire(
        "a", expected_version=1, tick=1000.5, fired_at=1001.0, owner="o1"
    )
    assert fired is not None
    await h.advance(5.0)
    same = await store.update("a", definition=DEF_A, enabled=True)
    assert same.version == fired.version
    assert same.changed_at == fired.changed_at
    new_def = {**DEF_A, "every": 30.0}
    changed = await store.update("a", definition=new_def)
    assert changed.version == fired.version + 1
    assert changed.definition == new_def
    assert changed.changed_at > fired.changed_at
    assert (changed.last_fire, changed.fire_count, changed.fired_by) == (
        1000.5,
        1,
        "o1",
    )
    disabled = await store.update("a", enabled=False)
    assert disabled.enabled is False
    assert disabled.definition == new_def
    assert disabled.version == changed.version + 1
    with _raises(ScheduleNotFound):
        await store.update("missing", enabled=False)


async def check_schedules_update_version_conflict(h: Harness) -> None:
    """update with a stale expected_version raises ScheduleConflict and changes
    nothing; the current version succeeds."""
    store = h.backend.schedules
    rec = await store.add("a", DEF_A)
    await store.record_fire(
        "a", expected_version=rec.version, tick=10.0, fired_at=10.0, owner="o"
    )
    with _raises(ScheduleConflict):
        await store.update("a", enabled=False, expected_version=rec.version)
    current = await store.get("a")
    assert current is not None
    assert current.enabled is True
    done = await store.update("a", enabled=False, expected_version=current.version)
    assert done.enabled is False


async def check_schedules_record_fire_cas(h: Harness) -> None:
    """record_fire succeeds once per version and only for a later tick; a stale
    version, an old tick or a removed entry change nothing."""
    store = h.backend.schedules
    rec = await store.add("a", DEF_A)
    first = await store.record_fire(
        "a", expected_version=rec.version, tick=100.25, fired_at=100.5, owner="o1"
    )
    assert first is not None
    assert (first.last_fire, first.last_fired_at, first.fire_count) == (
        100.25,
        100.5,
        1,
    )
    assert first.version == rec.version + 1
    assert first.fired_by == "o1"
    # The same version again (a second instance that read the old record).
    assert (
        await store.record_fire(
            "a", expected_version=rec.version, tick=100.25, fired_at=101, owner="o2"
        )
        is None
    )
    # Right version, but not a later tick.
    assert (
        await store.record_fire(
            "a", expected_version=first.version, tick=100.25, fired_at=101, owner="o2"
        )
        is None
    )
    second = await store.record_fire(
        "a",
        expected_version=first.version,
        tick=1_717_171_717.123,
        fired_at=1_717_171_718.0,
        owner="o2",
    )
    assert second is not None
    assert second.last_fire == 1_717_171_717.123  # exact float round trip
    assert second.fire_count == 2
    assert second.fired_by == "o2"
    got = await store.get("a")
    assert got == second
    await store.remove("a")
    assert (
        await store.record_fire(
            "a", expected_version=second.version, tick=2e9, fired_at=2e9, owner="o"
        )
        is None
    )


async def check_schedules_concurrent_fire_single_winner(h: Harness) -> None:
    """Of many concurrent record_fire calls for one tick, exactly one wins."""
    store = h.backend.schedules
    rec = await store.add("a", DEF_A)
    wins: list[str] = []

    async def fire(owner: str) -> None:
        done = await store.record_fire(
            "a", expected_version=rec.version, tick=50.0, fired_at=50.0, owner=owner
        )
        if done is not None:
            wins.append(owner)

    async with trio.open_nursery() as nursery:
        for index in range(8):
            nursery.start_soon(fire, f"o{index}")
    assert len(wins) == 1
    final = await store.get("a")
    assert final is not None
    assert final.fire_count == 1
    assert final.fired_by == wins[0]


async def check_schedules_revision_and_wake(h: Harness) -> None:
    """The revision grows on add/update/remove (not on fires) and a waiter in
    wait_changed is woken by a change without the clock moving."""
    store = h.backend.schedules
    r0 = await store.revision()
    rec = await store.add("a", DEF_A)
    r1 = await store.revision()
    assert r1 > r0
    await store.record_fire(
        "a", expected_version=rec.version, tick=5.0, fired_at=5.0, owner="o"
    )
    assert await store.revision() == r1
    await store.update("a", enabled=True)  # changes nothing
    assert await store.revision() == r1
    # Nothing changes: wait_changed returns the same revision after the timeout.
    async with trio.open_nursery() as nursery:
        idle = h.start(nursery, store.wait_changed, r1, timeout=2.0)
        await h.settle()
        assert not idle.done.is_set()
        await h.advance_until(idle, step=1.0, limit=5.0, what="wait_changed timeout")
    assert idle.result() == r1
    async with trio.open_nursery() as nursery:
        waiter = h.start(nursery, store.wait_changed, r1, timeout=3600.0)
        await h.settle()
        assert not waiter.done.is_set()
        await store.update("a", enabled=False)
        await h.eventually(lambda: waiter.done.is_set(), "wake after update")
    r2 = waiter.result()
    assert r2 > r1
    await store.remove("a")
    assert await store.revision() > r2
