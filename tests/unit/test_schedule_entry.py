"""ScheduleEntry: validation at construction and fire-time computation
(cron in time zones across DST changes, intervals, one-offs, jitter)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import stem
from stem._schedule import ScheduleEntry, format_tick, make_call

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def ts(*args: int, tz: Any = UTC) -> float:
    return datetime(*args, tzinfo=tz).timestamp()  # type: ignore[misc]


def local(tick: float, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(tick, tz).isoformat()


def entry(**kw: Any) -> ScheduleEntry:
    kw.setdefault("task", stem.signature("report"))
    return ScheduleEntry(kw.pop("name", "e"), **kw)


def between(e: ScheduleEntry, start: float, end: float) -> list[float]:
    ticks = []
    after = start
    while True:
        tick = e.next_fire(after, anchor=start)
        if tick is None or tick > end:
            return ticks
        ticks.append(tick)
        after = tick


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({}, "exactly one of cron=, every= or at="),
        ({"cron": "0 9 * * *", "every": 60}, "exactly one of"),
        ({"cron": "0 25 * * *"}, "invalid cron expression"),
        ({"cron": "0 9 * * * * *"}, "invalid cron expression"),
        ({"cron": "0 9 * *"}, "invalid cron expression"),
        ({"every": 0}, "at least 1 second"),
        ({"every": -5}, "every must be a finite number"),
        ({"at": datetime(2030, 1, 1)}, "timezone-aware"),
        ({"cron": "0 9 * * *", "timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"every": 60, "jitter": -1}, "jitter must be a finite number"),
        ({"every": 60, "jitter": 60}, "jitter (60.0 s) must be shorter"),
        ({"every": 60, "misfire": "catch_up"}, "misfire must be 'skip' or"),
        (
            {
                "every": 60,
                "start_at": datetime(2030, 1, 2, tzinfo=UTC),
                "end_at": datetime(2030, 1, 1, tzinfo=UTC),
            },
            "end_at must be after start_at",
        ),
        ({"every": 60, "name": ""}, "1-200 printable characters"),
        (
            {"every": 60, "task": stem.signature("t", countdown=5)},
            "remove countdown",
        ),
    ],
)
def test_invalid_entries_raise_at_construction(
    kw: dict[str, Any], message: str
) -> None:
    """Every invalid entry raises at construction with a message naming the problem."""
    with pytest.raises((ValueError, TypeError)) as info:
        entry(**kw)
    assert message in str(info.value)


def test_task_must_be_a_task_call_with_encodable_args() -> None:
    """A task that is not a signature, or args that cannot be encoded, are refused."""
    with pytest.raises(TypeError, match=r"stem\.signature"):
        entry(every=60, task="report")
    with pytest.raises(stem.EncodeError):
        entry(every=60, task=make_call("t", {"when": object()}))


def test_timedelta_every_and_zoneinfo_timezone_are_accepted() -> None:
    """every= takes a timedelta and timezone= a ZoneInfo, stored as seconds and key."""
    e = entry(every=timedelta(minutes=5), timezone=PARIS, jitter=timedelta(seconds=3))
    assert e.every == 300.0
    assert e.jitter == 3.0
    assert e.timezone == "Europe/Paris"
    assert e.kind == "every"


def test_cron_over_a_simulated_week_counts_exactly() -> None:
    """A weekday 09:00 Paris entry fires 5 times in a week, every 15 min 672 times."""
    start = ts(2024, 6, 3, 0, 0, tz=PARIS)  # a Monday
    end = start + 7 * 86400 - 1
    weekdays = entry(cron="0 9 * * 1-5", timezone="Europe/Paris")
    ticks = between(weekdays, start, end)
    assert [local(t, PARIS) for t in ticks] == [
        f"2024-06-0{d}T09:00:00+02:00" for d in range(3, 8)
    ]
    quarter = entry(cron="*/15 * * * *", timezone="Europe/Paris")
    assert len(between(quarter, start - 1, end)) == 7 * 24 * 4


def test_six_field_cron_has_a_leading_seconds_field() -> None:
    """'*/20 * * * * *' fires at seconds 0, 20 and 40 of every minute."""
    e = entry(cron="*/20 * * * * *")
    start = ts(2024, 1, 1, 12, 0, 0)
    assert [t - start for t in e.fire_times(start, anchor=start, count=4)] == [
        20.0,
        40.0,
        60.0,
        80.0,
    ]


@pytest.mark.parametrize(
    ("zone", "day", "expected"),
    [
        (
            "Europe/Paris",
            (2024, 3, 31),
            [
                "2024-03-30T02:30:00+01:00",
                "2024-03-31T03:00:00+02:00",
                "2024-04-01T02:30:00+02:00",
            ],
        ),
        (
            "America/New_York",
            (2024, 3, 10),
            [
                "2024-03-09T02:30:00-05:00",
                "2024-03-10T03:00:00-04:00",
                "2024-03-11T02:30:00-04:00",
            ],
        ),
    ],
)
def test_spring_forward_skipped_time_fires_once_at_the_jump(
    zone: str, day: tuple[int, int, int], expected: list[str]
) -> None:
    """A daily 02:30 entry fires once on the spring-forward day, when the clock jumps."""
    tz = ZoneInfo(zone)
    e = entry(cron="30 2 * * *", timezone=zone)
    start = ts(day[0], day[1], day[2] - 1, 0, 0, tz=tz)
    ticks = between(e, start, start + 3 * 86400 - 1)
    assert [local(t, tz) for t in ticks] == expected


@pytest.mark.parametrize(
    ("zone", "day", "expected"),
    [
        (
            "America/New_York",
            (2024, 11, 3),
            [
                "2024-11-02T01:30:00-04:00",
                "2024-11-03T01:30:00-04:00",
                "2024-11-04T01:30:00-05:00",
            ],
        ),
        (
            "Europe/Paris",
            (2024, 10, 27),
            [
                "2024-10-26T02:30:00+02:00",
                "2024-10-27T02:30:00+02:00",
                "2024-10-28T02:30:00+01:00",
            ],
        ),
    ],
)
def test_fall_back_repeated_time_fires_once_at_first_occurrence(
    zone: str, day: tuple[int, int, int], expected: list[str]
) -> None:
    """A daily entry in the repeated hour fires once on fall-back day (first occurrence)."""
    tz = ZoneInfo(zone)
    hour = 1 if zone == "America/New_York" else 2
    e = entry(cron=f"30 {hour} * * *", timezone=zone)
    start = ts(day[0], day[1], day[2] - 1, 0, 0, tz=tz)
    ticks = between(e, start, start + 3 * 86400 - 1)
    assert [local(t, tz) for t in ticks] == expected


def test_half_hourly_cron_across_both_dst_changes_never_repeats_an_instant() -> None:
    """Across spring-forward and fall-back, a half-hourly entry's ticks strictly increase."""
    e = entry(cron="*/30 * * * *", timezone="America/New_York")
    for day in ((2024, 3, 10), (2024, 11, 3)):
        start = ts(*day, 0, 0, tz=NEW_YORK)
        ticks = between(e, start, start + 86400)
        assert ticks == sorted(set(ticks))
        assert all(b - a >= 1800.0 for a, b in zip(ticks, ticks[1:]))
    spring = between(
        e, ts(2024, 3, 10, 0, 0, tz=NEW_YORK), ts(2024, 3, 10, 4, 0, tz=NEW_YORK)
    )
    assert [local(t, NEW_YORK)[11:] for t in spring] == [
        "00:30:00-05:00",
        "01:00:00-05:00",
        "01:30:00-05:00",
        "03:00:00-04:00",
        "03:30:00-04:00",
        "04:00:00-04:00",
    ]


def test_interval_ticks_follow_the_anchor_or_start_at_and_stop_at_end_at() -> None:
    """every= ticks at anchor + k*every (k >= 1), or start_at + k*every, up to end_at."""
    e = entry(every=10)
    assert e.fire_times(1000.0, anchor=1000.0, count=3) == [1010.0, 1020.0, 1030.0]
    assert e.next_fire(1034.0, anchor=1000.0) == 1040.0
    start = datetime.fromtimestamp(5000, UTC)
    bounded = entry(every=10, start_at=start, end_at=start + timedelta(seconds=25))
    assert bounded.fire_times(0.0, anchor=0.0, count=10) == [5000.0, 5010.0, 5020.0]


def test_one_off_fires_once() -> None:
    """at= gives one tick, and none once it has passed."""
    when = datetime(2030, 5, 1, 8, 0, tzinfo=PARIS)
    e = entry(at=when)
    assert e.kind == "at"
    assert e.fire_times(0.0, anchor=0.0, count=5) == [when.timestamp()]
    assert e.next_fire(when.timestamp(), anchor=0.0) is None


def test_latest_fire_collapses_a_backlog() -> None:
    """latest_fire gives only the most recent of many missed ticks."""
    e = entry(every=60)
    assert e.latest_fire(0.0, 100_000.0, anchor=0.0) == 99_960.0
    assert e.latest_fire(99_960.0, 100_000.0, anchor=0.0) is None
    daily = entry(cron="0 9 * * *", timezone="Europe/Paris")
    until = ts(2024, 6, 10, 12, 0, tz=PARIS)
    latest = daily.latest_fire(ts(2024, 1, 1), until, anchor=0.0)
    assert latest is not None
    assert local(latest, PARIS) == "2024-06-10T09:00:00+02:00"


def test_jitter_is_bounded_and_the_same_on_every_instance() -> None:
    """Jitter offsets lie in [0, jitter), vary between ticks and are reproducible."""
    e = entry(every=60, jitter=20)
    ticks = e.fire_times(0.0, anchor=0.0, count=500)
    offsets = [e.jitter_offset(t) for t in ticks]
    assert all(0.0 <= o < 20.0 for o in offsets)
    assert len(set(offsets)) > 400
    assert max(offsets) > 15 and min(offsets) < 5
    again = entry(every=60, jitter=20)
    assert [again.jitter_offset(t) for t in ticks] == offsets
    assert entry(every=60).jitter_offset(ticks[0]) == 0.0


def test_task_ids_are_deterministic_per_entry_and_tick() -> None:
    """The task id of a fire depends only on entry name and tick; it is a UUIDv7."""
    e = entry(every=60)
    first = e.task_id(1_717_000_000.0)
    assert first == entry(every=60).task_id(1_717_000_000.0)
    assert first != e.task_id(1_717_000_060.0)
    assert first != entry(name="other", every=60).task_id(1_717_000_000.0)
    assert uuid.UUID(first).version == 7


def test_to_dict_round_trips_with_signatures() -> None:
    """An entry survives to_dict/from_dict, keeping its task call and options."""
    e = entry(
        cron="0 9 * * 1",
        timezone="Europe/Paris",
        jitter=5,
        misfire="skip",
        misfire_grace=30,
        task=stem.signature("report", {"kind": "weekly"}, queue="reports", priority=3),
        start_at=datetime(2024, 1, 1, tzinfo=UTC),
    )
    data = e.to_dict()
    back = ScheduleEntry.from_dict(data)
    assert back.to_dict() == data
    assert back.task.name == "report"
    assert back.task.options["queue"] == "reports"
    assert isinstance(back.task, type(stem.signature("x")))
    assert e.describe() == "cron '0 9 * * 1' in Europe/Paris"
    with pytest.raises(ValueError, match="malformed schedule entry"):
        ScheduleEntry.from_dict({"name": "x"})


def test_format_tick_renders_in_the_entry_zone() -> None:
    """format_tick shows a tick as ISO 8601 in a zone."""
    assert format_tick(0.0, "Europe/Paris") == "1970-01-01T01:00:00+01:00"
