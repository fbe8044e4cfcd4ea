"""The Beat actor under Trio's MockClock on the in-memory backend: exact fire
counts, DST, jitter, misfire policies, leader failover, changes while running."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import attrs
import pytest
import trio

import stem
from stem._clock import _ANCHOR
from stem._signals import ScheduleEvent
from stem.adapters.memory import open_backend

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
#: Long leases keep week-long simulations cheap (few renewals).
SLOW = {"lease_ttl": 600.0}


def set_wall(when: datetime) -> None:
    """Make Stem's wall clock read ``when`` now (MockClock tests)."""
    _ANCHOR.set((when.timestamp(), trio.current_time()))


async def sleep_until(when: datetime) -> None:
    await trio.sleep(when.timestamp() - stem.now())


@attrs.define
class Fires:
    """schedule_* signal payloads seen by an app."""

    events: list[ScheduleEvent] = attrs.Factory(list)

    def of(self, signal: str, entry: str | None = None) -> list[ScheduleEvent]:
        return [
            e
            for e in self.events
            if e.signal == signal and (entry is None or e.entry == entry)
        ]

    def ticks(self, entry: str | None = None) -> list[float]:
        return [e.fire_time for e in self.of("schedule_dispatched", entry)]


def make_app(*entries: stem.ScheduleEntry) -> tuple[stem.App, Fires]:
    app = stem.App(schedules=entries)
    fires = Fires()
    for name in ("schedule_due", "schedule_dispatched", "schedule_failed"):
        app.signals.connect(name, fires.events.append)
    return app, fires


def every(name: str, seconds: float, **kw: Any) -> stem.ScheduleEntry:
    return stem.ScheduleEntry(name, every=seconds, task=stem.signature("job"), **kw)


async def test_cron_over_a_simulated_week_fires_exactly(autojump_clock: Any) -> None:
    """Over a simulated week, a weekday 09:00 Paris entry fires 5 times and an
    every-6-hours entry 28 times, each on its tick, each task queued once."""
    set_wall(datetime(2024, 6, 2, 12, 0, tzinfo=PARIS))  # a Sunday
    daily = stem.ScheduleEntry(
        "daily",
        cron="0 9 * * 1-5",
        timezone="Europe/Paris",
        task=stem.signature("report", {"kind": "daily"}, queue="reports"),
    )
    six = stem.ScheduleEntry("six", cron="0 */6 * * *", task=stem.signature("job"))
    app, fires = make_app(daily, six)
    async with stem.Client.in_memory(app=app) as client:
        async with client.beat(**SLOW):
            await sleep_until(datetime(2024, 6, 9, 11, 59, tzinfo=PARIS))
        await client.flush()
        reports = await client.queue_stats("reports")
        jobs = await client.queue_stats("default")
        stored = {r.name: r for r in await client.backend.schedules.list()}
    assert [
        datetime.fromtimestamp(t, PARIS).isoformat() for t in fires.ticks("daily")
    ] == [f"2024-06-0{d}T09:00:00+02:00" for d in range(3, 8)]
    assert len(fires.ticks("six")) == 28
    assert reports.pending == 5
    assert jobs.pending == 28
    assert stored["daily"].fire_count == 5
    assert stored["six"].fire_count == 28
    for event in fires.of("schedule_dispatched"):
        assert event.drift is not None
        assert 0.0 <= event.drift < 0.01
        assert event.task_id == stem.ScheduleEntry.task_id(
            daily if event.entry == "daily" else six, event.fire_time
        )
    assert len(fires.of("schedule_due")) == 33


@pytest.mark.parametrize(
    ("zone", "start", "expected"),
    [
        (
            "Europe/Paris",
            datetime(2024, 3, 30, 12, 0),
            ["2024-03-31T03:00:00+02:00", "2024-04-01T02:30:00+02:00"],
        ),
        (
            "America/New_York",
            datetime(2024, 3, 9, 12, 0),
            ["2024-03-10T03:00:00-04:00", "2024-03-11T02:30:00-04:00"],
        ),
    ],
)
async def test_spring_forward_fires_once_in_two_time_zones(
    autojump_clock: Any, zone: str, start: datetime, expected: list[str]
) -> None:
    """A daily 02:30 entry fires once on spring-forward day (at the jump) in Paris
    and New York."""
    tz = ZoneInfo(zone)
    set_wall(start.replace(tzinfo=tz))
    e = stem.ScheduleEntry(
        "dst", cron="30 2 * * *", timezone=zone, task=stem.signature("job")
    )
    app, fires = make_app(e)
    async with stem.Client.in_memory(app=app) as client, client.beat(**SLOW):
        await trio.sleep(2 * 86400)
    assert [
        datetime.fromtimestamp(t, tz).isoformat() for t in fires.ticks()
    ] == expected


async def test_fall_back_fires_once_in_two_time_zones(autojump_clock: Any) -> None:
    """An entry inside the repeated hour fires once on fall-back day, in both zones."""
    set_wall(datetime(2024, 10, 26, 12, 0, tzinfo=UTC))
    paris = stem.ScheduleEntry(
        "paris", cron="30 2 * * *", timezone="Europe/Paris", task=stem.signature("j")
    )
    ny = stem.ScheduleEntry(
        "ny", cron="30 1 * * *", timezone="America/New_York", task=stem.signature("j")
    )
    app, fires = make_app(paris, ny)
    async with stem.Client.in_memory(app=app) as client, client.beat(**SLOW):
        await sleep_until(datetime(2024, 11, 4, 0, 0, tzinfo=UTC))
    paris_days = [datetime.fromtimestamp(t, PARIS) for t in fires.ticks("paris")]
    ny_days = [datetime.fromtimestamp(t, NEW_YORK) for t in fires.ticks("ny")]
    assert [d.day for d in paris_days] == list(range(27, 32)) + [1, 2, 3]
    assert [d.isoformat() for d in paris_days[:2]] == [
        "2024-10-27T02:30:00+02:00",
        "2024-10-28T02:30:00+01:00",
    ]
    assert [d.day for d in ny_days] == [27, 28, 29, 30, 31, 1, 2, 3]
    assert ny_days[-1].isoformat() == "2024-11-03T01:30:00-04:00"


async def test_jitter_delays_each_fire_within_bounds(autojump_clock: Any) -> None:
    """With jitter=20 every fire happens within [tick, tick + 20 s), at the offset
    every instance computes, and the offsets differ."""
    e = every("jit", 60.0, jitter=20.0)
    app, fires = make_app(e)
    async with stem.Client.in_memory(app=app) as client, client.beat():
        await trio.sleep(3600)
    dispatched = fires.of("schedule_dispatched")
    assert len(dispatched) >= 58
    offsets = [ev.at - ev.fire_time for ev in dispatched]
    for ev, offset in zip(dispatched, offsets, strict=True):
        assert 0.0 <= offset < 20.0
        assert offset == pytest.approx(e.jitter_offset(ev.fire_time), abs=0.01)
    assert max(offsets) - min(offsets) > 5.0


async def run_with_downtime(misfire: str) -> tuple[list[float], float]:
    """Run beat for 5 min, stop it for 10 min, run again for 5 min; returns
    the dispatched ticks and the time the second run started."""
    e = every("m", 60.0, misfire=misfire, misfire_grace=30.0)
    app, fires = make_app(e)
    async with stem.Client.in_memory(app=app) as client:
        async with client.beat():
            await trio.sleep(301)
        assert len(fires.ticks()) == 5
        await trio.sleep(630)
        restart = stem.now()
        async with client.beat():
            await trio.sleep(301)
    ticks = fires.ticks()
    assert ticks == sorted(set(ticks))
    return ticks[5:], restart


async def test_misfire_run_once_fires_the_missed_ticks_once(
    autojump_clock: Any,
) -> None:
    """After 10 min of downtime, run_once fires one late catch-up (no backlog of
    10), then follows the grid again."""
    ticks, restart = await run_with_downtime("run_once")
    catch_up = [t for t in ticks if t < restart]
    assert len(catch_up) == 1
    assert restart - catch_up[0] < 60.0  # the latest missed tick
    assert len(ticks) == 1 + 5


async def test_misfire_skip_drops_late_ticks(autojump_clock: Any) -> None:
    """After 10 min of downtime, skip fires nothing late and resumes at the next tick."""
    ticks, restart = await run_with_downtime("skip")
    assert len(ticks) == 5
    assert all(t > restart for t in ticks)
    assert ticks[0] - restart < 60.0


async def test_interval_entry_keeps_its_grid_without_backlog(
    autojump_clock: Any,
) -> None:
    """An every=1 s entry fires once per second for a minute: 60 fires, one per tick."""
    app, fires = make_app(every("fast", 1.0))
    async with stem.Client.in_memory(app=app) as client, client.beat():
        start = stem.now()
        await trio.sleep(60.5)
    ticks = fires.ticks()
    assert len(ticks) == 60
    assert all(b - a == pytest.approx(1.0) for a, b in zip(ticks, ticks[1:]))
    assert ticks[0] - start <= 1.0 + 1e-6


@asynccontextmanager
async def shared_clients(
    n: int, *entries: stem.ScheduleEntry, backend: Any = None
) -> AsyncIterator[tuple[list[stem.Client], list[Fires]]]:
    """``n`` clients (separate apps, same entries) on one in-memory backend."""
    async with open_backend("memory://") as memory:
        shared = memory if backend is None else backend(memory)
        clients, fires = [], []
        for _ in range(n):
            app, seen = make_app(*entries)
            clients.append(stem.Client(backend=shared, app=app))
            fires.append(seen)
        yield clients, fires


async def test_leader_failover_loses_and_doubles_no_tick(autojump_clock: Any) -> None:
    """When the leader dies, the follower takes over within one lease (plus one
    poll) and every tick of a 5 s entry fires exactly once overall."""
    e = every("fo", 5.0)
    async with shared_clients(2, e) as (clients, fires):

        async def run_leader(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            async with clients[0] as client, client.beat(lease_ttl=10.0) as leader:
                await trio.sleep(0.1)
                assert leader.is_leader
                task_status.started()
                await trio.sleep_forever()

        async with clients[1] as follower_client, trio.open_nursery() as nursery:
            leader_scope = trio.CancelScope()

            async def leader_task(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
                with leader_scope:
                    await run_leader(task_status=task_status)

            await nursery.start(leader_task)
            async with follower_client.beat(lease_ttl=10.0) as follower:
                await trio.sleep(32.5)
                assert not follower.is_leader
                leader_scope.cancel()  # the leader dies without releasing
                await trio.sleep(12.0)
                assert follower.is_leader
                assert (await follower.statistics()).leaderships == 1
                await trio.sleep(30.0)
    all_ticks = sorted(fires[0].ticks() + fires[1].ticks())
    assert all_ticks == sorted(set(all_ticks))
    steps = [b - a for a, b in zip(all_ticks, all_ticks[1:])]
    assert steps == [pytest.approx(5.0)] * len(steps)
    assert len(fires[0].ticks()) == 6
    assert len(fires[1].ticks()) == 8  # ticks 35 s .. 70 s
    late = [ev.at - ev.fire_time for ev in fires[1].of("schedule_dispatched")]
    assert max(late) <= 10.0 + 2.0 + 0.01  # no later than one lease plus one poll


@attrs.define
class AlwaysGranted:
    """A lock store that says yes to everyone (two instances both lead)."""

    async def acquire(self, name: str, owner: str, *, ttl: float) -> bool:
        await trio.lowlevel.checkpoint()
        return True

    async def renew(self, name: str, owner: str, *, ttl: float) -> bool:
        await trio.lowlevel.checkpoint()
        return True

    async def release(self, name: str, owner: str) -> bool:
        await trio.lowlevel.checkpoint()
        return True

    async def owner(self, name: str) -> str | None:
        await trio.lowlevel.checkpoint()
        return None


class SplitBrain:
    """The memory backend with a lock store that makes everyone leader."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.locks = AlwaysGranted()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_two_instances_that_both_lead_fire_each_tick_once(
    autojump_clock: Any,
) -> None:
    """Three beats that all believe they lead still fire each tick once (the
    compare-and-set of the last fire decides), and only one task per tick is
    queued."""
    e = every("both", 2.0)
    async with shared_clients(3, e, backend=SplitBrain) as (clients, fires):
        async with clients[0] as c0, clients[1] as c1, clients[2] as c2:
            async with c0.beat() as b0, c1.beat() as b1, c2.beat() as b2:
                await trio.sleep(60.5)
                assert b0.is_leader and b1.is_leader and b2.is_leader
                stats = [await b.statistics() for b in (b0, b1, b2)]
            await c0.flush()
            queued = await c0.queue_stats("default")
    ticks = sorted(t for f in fires for t in f.ticks())
    assert len(ticks) == 30
    assert ticks == sorted(set(ticks))
    assert queued.pending == 30
    assert sum(s.fired for s in stats) == 30
    assert sum(s.conflicts for s in stats) > 0


async def test_lost_lease_stops_firing_at_once(autojump_clock: Any) -> None:
    """When a renewal reports the lease lost, the beat stops firing at once and
    becomes a follower; it fires again once it takes the lease back."""
    app, fires = make_app(every("l", 1.0))
    async with stem.Client.in_memory(app=app) as client:
        locks = client.backend.locks
        async with client.beat(lease_ttl=3.0) as beat:
            await trio.sleep(5.5)
            assert beat.is_leader
            fired_before = len(fires.ticks())
            # Another owner takes the lock (as if ours had expired).
            await locks.release("stem.beat", beat.owner)
            assert await locks.acquire("stem.beat", "intruder", ttl=30.0)
            await trio.sleep(1.05)  # the next renewal is due within ttl/3
            assert not beat.is_leader
            lost_at = len(fires.ticks())
            await trio.sleep(20.0)
            assert len(fires.ticks()) == lost_at
            assert lost_at - fired_before <= 1
            await trio.sleep(15.0)  # the intruder's lock expires
            assert beat.is_leader
            assert len(fires.ticks()) > lost_at


async def test_entries_changed_while_running_wake_the_beat(autojump_clock: Any) -> None:
    """Adding, disabling, re-enabling, redefining and removing entries while beat
    sleeps toward an hourly tick takes effect at once."""
    app, fires = make_app(every("hourly", 3600.0))
    async with stem.Client.in_memory(app=app) as client, client.beat() as beat:
        await trio.sleep(10.0)
        await beat.add(every("quick", 5.0))
        await trio.sleep(5.5)
        assert len(fires.ticks("quick")) == 1  # woken, not after the hourly sleep
        await beat.disable("quick")
        await trio.sleep(30.0)
        assert len(fires.ticks("quick")) == 1
        await beat.enable("quick")
        await trio.sleep(10.5)
        assert len(fires.ticks("quick")) == 3
        # Another writer (say the CLI) redefines it through the store.
        await client.backend.schedules.update(
            "quick", definition=every("quick", 1.0).to_dict()
        )
        await trio.sleep(3.2)
        assert len(fires.ticks("quick")) == 6
        assert await beat.remove("quick") is True
        await trio.sleep(60.0)
        assert len(fires.ticks("quick")) == 6
        names = [r.name for r in await beat.entries()]
    assert names == ["hourly"]
    assert fires.ticks("hourly") == []


async def test_a_failed_publish_emits_schedule_failed(
    autojump_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fire whose publish fails emits schedule_failed with the error; beat keeps
    running and the next tick fires."""
    app, fires = make_app(every("f", 10.0))
    async with stem.Client.in_memory(app=app) as client:
        real_publish = client.publish
        calls = 0

        async def flaky_publish(envelopes: Any) -> list[str]:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise stem.BrokerUnavailable("broker down")
            return await real_publish(envelopes)

        monkeypatch.setattr(client, "publish", flaky_publish)
        async with client.beat() as beat:
            await trio.sleep(25.0)
            stats = await beat.statistics()
    failed = fires.of("schedule_failed")
    assert len(failed) == 1
    assert failed[0].error is not None
    assert failed[0].error.type.endswith("BrokerUnavailable")
    assert len(fires.ticks()) == 1
    assert (stats.failed, stats.fired) == (1, 1)


async def test_one_off_entry_fires_once(autojump_clock: Any) -> None:
    """An at= entry fires once at its time, then never again."""
    set_wall(datetime(2030, 1, 1, 8, 0, tzinfo=UTC))
    when = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
    app, fires = make_app(
        stem.ScheduleEntry("once", at=when, task=stem.signature("job"))
    )
    async with stem.Client.in_memory(app=app) as client, client.beat(**SLOW):
        await trio.sleep(86400)
    assert fires.ticks() == [when.timestamp()]


async def test_app_schedules_are_the_default_entries(autojump_clock: Any) -> None:
    """client.beat() with no entries registers the app's schedules; a second
    registration of the same definition changes nothing stored."""
    app, _ = make_app(every("a", 30.0), every("b", 60.0))
    async with stem.Client.in_memory(app=app) as client:
        async with client.beat():
            await trio.sleep(1)
        first = {r.name: r.version for r in await client.backend.schedules.list()}
        async with client.beat():
            await trio.sleep(0.5)
        again = {r.name: r.version for r in await client.backend.schedules.list()}
    assert set(first) == {"a", "b"}
    assert again == first
    async with stem.Client.in_memory() as client:
        with pytest.raises(ValueError, match="duplicate"):
            client.beat(entries=[every("x", 5), every("x", 6)])
        with pytest.raises(ValueError, match="lease_ttl"):
            client.beat(lease_ttl=0)


async def test_stem_main_runs_beat_per_stem_beat_setting(autojump_clock: Any) -> None:
    """STEM_BEAT=auto runs beat when the app has schedules, on always, off never."""
    from stem._main import _maybe_beat

    with_entries, _ = make_app(every("a", 10.0))
    without, _ = make_app()
    cases = [
        (with_entries, "auto", True),
        (without, "auto", False),
        (without, "on", True),
        (with_entries, "off", False),
    ]
    for app, mode, runs in cases:
        settings = stem.Settings(beat=mode)
        async with stem.Client.in_memory(app=app) as client:
            async with _maybe_beat(client, settings) as handle:
                await trio.sleep(0.1)
                assert (handle is not None and handle.is_leader) is runs
