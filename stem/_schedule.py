"""Schedule entries: what beat fires and when (pure domain, no I/O).

A :class:`ScheduleEntry` names a task call and one of three timings: a cron
expression read in a time zone (``cron=``), a fixed interval (``every=``) or
one moment (``at=``). Its *ticks* are the nominal fire times, as Unix epoch
seconds; every beat instance computes the same ticks from the same stored
state, which is what lets the store decide which instance fires a tick.

Daylight saving time (see docs/beat.md): cron fields are matched against the
wall clock of ``timezone``. A wall time skipped by a spring-forward jump
fires once, at the instant of the jump; a wall time repeated by a fall-back
fires once, at its first occurrence.
"""

from __future__ import annotations

import hashlib
import math
import re
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, runtime_checkable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs
from croniter import CroniterError, croniter

from ._canvas import signature
from ._codec import canonical_args, dumps
from ._durations import to_epoch, to_seconds
from ._options import check_priority, check_queue_name

Misfire = Literal["skip", "run_once"]
MISFIRE_POLICIES: tuple[str, ...] = ("skip", "run_once")
DEFAULT_MISFIRE_GRACE = 60.0

#: Options of a scheduled task call that a fire passes to ``build_envelope``.
FIRE_OPTIONS = frozenset({"queue", "priority", "expires", "max_retries", "headers"})
#: Options a schedule decides itself (the time and id of every fire).
_OWN_OPTIONS = frozenset({"countdown", "eta", "task_id", "unique_key"})

_NAME = re.compile(r"[^\x00-\x1f\x7f-\x9f]{1,200}")
#: The shortest interval of an ``every=`` entry (seconds): beat's finest
#: granularity, as for a six-field cron (each fire costs a few backend round
#: trips, so a shorter interval would be a busy loop, not a schedule).
MIN_EVERY = 1.0
#: Where the check that a cron expression fires at all starts searching.
_CRON_PROBE = datetime(2001, 1, 1)
#: How many cron next-tick computations an entry remembers.
_CRON_MEMO = 16
#: Upper bound of cron candidates examined for one next-fire computation.
_CRON_SEARCH_LIMIT = 100_000
#: Windows (seconds before "now") searched for the latest missed cron tick.
_WINDOWS = (60.0, 3600.0, 86400.0, 32 * 86400.0, 400 * 86400.0, 5 * 366 * 86400.0)


@runtime_checkable
class TaskCall(Protocol):
    """What ``task=`` needs: ``stem.signature(...)`` or anything shaped alike."""

    @property
    def name(self) -> str: ...

    @property
    def args(self) -> Any: ...

    @property
    def options(self) -> Mapping[str, Any]: ...


def make_call(
    name: str, args: Mapping[str, Any] | None = None, **options: Any
) -> TaskCall:
    """A task call as ``stem.signature(name, args, **options)`` makes it."""
    made: TaskCall = signature(name, dict(args or {}), **options)
    return made


def _check_task(_: object, __: object, task: Any) -> None:
    name = getattr(task, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(
            f"task must be a task call made with stem.signature(name, args, ...), "
            f"got {task!r}"
        )
    canonical_args(getattr(task, "args", None))
    options = getattr(task, "options", None)
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise TypeError(f"task options must be a mapping, got {options!r}")
    given = {k for k, v in options.items() if v is not None}
    own = given & _OWN_OPTIONS
    if own:
        raise ValueError(
            f"a schedule sets the time and id of each fire itself; remove "
            f"{', '.join(sorted(own))} from the task call of {name!r}"
        )
    unknown = given - FIRE_OPTIONS
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(sorted(unknown))} for a scheduled call "
            f"of {name!r}; accepted: {', '.join(sorted(FIRE_OPTIONS))}"
        )
    fire_options(options)


def fire_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments ``build_envelope`` gets from a call's options."""
    out: dict[str, Any] = {}
    for key in sorted(FIRE_OPTIONS):
        value: Any = options.get(key)
        if value is None:
            continue
        if key == "queue":
            value = check_queue_name(value)
        elif key == "priority":
            value = check_priority(value)
        elif key == "expires":
            if isinstance(value, Mapping | datetime):
                raise ValueError(
                    "a scheduled call's expires must be seconds after each fire, "
                    f"not an absolute time ({value!r})"
                )
            value = to_seconds(value, name="expires")
        elif key == "max_retries":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"max_retries must be an int >= 0, got {value!r}")
        elif key == "headers" and (
            not isinstance(value, Mapping)
            or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            )
        ):
            raise ValueError(f"headers must map str to str, got {value!r}")
        out[key] = dict(value) if key == "headers" else value
    return out


def _check_name(_: object, __: object, name: Any) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"schedule entry name must be 1-200 printable characters, got {name!r}"
        )


def _timezone(value: object) -> str:
    if isinstance(value, ZoneInfo):
        return value.key
    if not isinstance(value, str) or not value:
        raise TypeError(
            f"timezone must be an IANA name like 'Europe/Paris', got {value!r}"
        )
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value!r}: use an IANA name like "
            "'Europe/Paris' or 'UTC'"
        ) from None
    return value


def _check_cron(_: object, __: object, cron: Any) -> None:
    if cron is None:
        return
    if not isinstance(cron, str):
        raise TypeError(f"cron must be a string like '0 9 * * *', got {cron!r}")
    fields = cron.split()
    if len(fields) not in (5, 6) or not croniter.is_valid(
        cron, second_at_beginning=len(fields) == 6
    ):
        raise ValueError(
            f"invalid cron expression {cron!r}: expected 5 fields "
            "'minute hour day-of-month month day-of-week', or 6 with a leading "
            "seconds field"
        )
    try:
        croniter(cron, _CRON_PROBE, second_at_beginning=len(fields) == 6).get_next(
            datetime
        )
    except CroniterError:
        raise ValueError(
            f"cron expression {cron!r} never fires: no date matches it "
            "(e.g. February 30 or April 31)"
        ) from None


def _every(value: object) -> float | None:
    if value is None:
        return None
    seconds = to_seconds(value, name="every")  # type: ignore[arg-type]
    if seconds < MIN_EVERY:
        raise ValueError(
            f"every must be at least {MIN_EVERY:g} second (beat's finest "
            f"interval), got {value!r}"
        )
    return seconds


def _jitter(value: object) -> float:
    return to_seconds(value, name="jitter")  # type: ignore[arg-type]


def _grace(value: object) -> float:
    return to_seconds(value, name="misfire_grace")  # type: ignore[arg-type]


def _aware(value: object, name: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), UTC)
    to_epoch(value, name=name)  # type: ignore[arg-type]
    assert isinstance(value, datetime)
    return value


def _at(value: object) -> datetime | None:
    return _aware(value, "at")


def _start_at(value: object) -> datetime | None:
    return _aware(value, "start_at")


def _end_at(value: object) -> datetime | None:
    return _aware(value, "end_at")


@attrs.frozen
class ScheduleEntry:
    """A task call fired on a schedule.

    ``ScheduleEntry("report", cron="0 9 * * *", task=stem.signature("report"),
    timezone="Europe/Paris")``. Exactly one of ``cron`` (5 fields, or 6 with a
    leading seconds field), ``every`` (seconds or timedelta) and ``at`` (an
    aware datetime, fired once) is given. ``jitter`` delays each fire by a
    pseudo-random amount in ``[0, jitter)`` seconds, the same on every beat
    instance. Ticks at most ``misfire_grace`` seconds late all fire (so a
    leader failover loses none); older ones are *missed*: ``"run_once"`` fires
    the latest missed tick once, late (unless a recent one fires anyway),
    ``"skip"`` drops them. No backlog piles up either way. ``start_at`` and
    ``end_at`` bound the ticks. ``enabled`` is the state the entry is stored
    with the first time (``stem schedule enable/disable`` change it later).
    Invalid values raise at construction.
    """

    name: str = attrs.field(validator=_check_name)
    cron: str | None = attrs.field(default=None, kw_only=True, validator=_check_cron)
    every: float | None = attrs.field(default=None, kw_only=True, converter=_every)
    at: datetime | None = attrs.field(default=None, kw_only=True, converter=_at)
    task: TaskCall = attrs.field(kw_only=True, validator=_check_task)
    timezone: str = attrs.field(default="UTC", kw_only=True, converter=_timezone)
    jitter: float = attrs.field(default=0.0, kw_only=True, converter=_jitter)
    enabled: bool = attrs.field(
        default=True, kw_only=True, validator=attrs.validators.instance_of(bool)
    )
    misfire: Misfire = attrs.field(default="run_once", kw_only=True)
    misfire_grace: float = attrs.field(
        default=DEFAULT_MISFIRE_GRACE, kw_only=True, converter=_grace
    )
    start_at: datetime | None = attrs.field(
        default=None, kw_only=True, converter=_start_at
    )
    end_at: datetime | None = attrs.field(default=None, kw_only=True, converter=_end_at)
    #: the last few cron ticks computed ("after" -> tick): beat asks for the
    #: same next tick on every look at its entries, and croniter is slow
    _cron_memo: dict[float, float | None] = attrs.field(
        factory=dict, init=False, eq=False, repr=False
    )

    def __attrs_post_init__(self) -> None:
        given = [k for k in ("cron", "every", "at") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"schedule entry {self.name!r} needs exactly one of cron=, every= "
                f"or at=, got {', '.join(given) or 'none'}"
            )
        if self.misfire not in MISFIRE_POLICIES:
            raise ValueError(
                f"misfire must be 'skip' or 'run_once', got {self.misfire!r}"
            )
        if self.every is not None and self.jitter >= self.every:
            raise ValueError(
                f"jitter ({self.jitter} s) must be shorter than every "
                f"({self.every} s), or fires would overtake each other"
            )
        start, end = self.start_ts, self.end_ts
        if start is not None and end is not None and end <= start:
            raise ValueError("end_at must be after start_at")

    # -- timing -------------------------------------------------------------

    @property
    def kind(self) -> str:
        """``"cron"``, ``"every"`` or ``"at"``."""
        return "cron" if self.cron else "every" if self.every is not None else "at"

    @property
    def start_ts(self) -> float | None:
        return None if self.start_at is None else self.start_at.timestamp()

    @property
    def end_ts(self) -> float | None:
        return None if self.end_at is None else self.end_at.timestamp()

    def next_fire(self, after: float, *, anchor: float) -> float | None:
        """The first tick strictly after ``after`` (epoch seconds), or None when
        the entry will never fire again. ``anchor`` is when the entry's timing
        was stored; interval ticks fall on ``anchor + k * every`` (k >= 1), or
        on ``start_at + k * every`` (k >= 0) when ``start_at`` is set."""
        start = self.start_ts
        if start is not None and after < start:
            after = math.nextafter(start, -math.inf)
        tick: float | None
        if self.cron is not None:
            tick = self._cron_next(after)
            if tick is None:
                return None
        elif self.every is not None:
            base = start if start is not None else anchor + self.every
            if after < base:
                tick = base
            else:
                k = math.floor((after - base) / self.every) + 1
                tick = base + k * self.every
                while tick <= after:
                    k += 1
                    tick = base + k * self.every
        else:
            assert self.at is not None
            at = self.at.timestamp()
            if at <= after:
                return None
            tick = at
        end = self.end_ts
        if end is not None and tick > end:
            return None
        return tick

    def latest_fire(self, after: float, until: float, *, anchor: float) -> float | None:
        """The latest tick in ``(after, until]``, or None if there is none.

        Cost does not grow with the number of ticks skipped: interval ticks
        are computed directly, cron ticks are searched from a window before
        ``until`` that widens until it holds one."""
        first = self.next_fire(after, anchor=anchor)
        if first is None or first > until:
            return None
        if self.every is not None:
            end = self.end_ts
            limit = until if end is None else min(until, end)
            upcoming = self.next_fire(limit, anchor=anchor)
            if upcoming is None:
                upcoming = self._every_next_unbounded(limit, anchor)
            return max(first, upcoming - self.every)
        tick = first
        for window in _WINDOWS:
            start = until - window
            if start <= after:
                break
            found = self.next_fire(start, anchor=anchor)
            if found is not None and found <= until:
                tick = found
                break
        while True:
            upcoming = self.next_fire(tick, anchor=anchor)
            if upcoming is None or upcoming > until:
                return tick
            tick = upcoming

    def _every_next_unbounded(self, after: float, anchor: float) -> float:
        return attrs.evolve(self, end_at=None).next_fire(after, anchor=anchor) or after

    def fire_times(self, after: float, *, anchor: float, count: int) -> list[float]:
        """The next ``count`` ticks after ``after`` (fewer if the entry ends)."""
        return list(_take(self._ticks(after, anchor), count))

    def _ticks(self, after: float, anchor: float) -> Iterator[float]:
        while True:
            tick = self.next_fire(after, anchor=anchor)
            if tick is None:
                return
            yield tick
            after = tick

    def _cron_next(self, after: float) -> float | None:
        """The first cron tick after ``after``; None when there is none
        (an expression that matches no date, or one stored before that was
        checked, never fires rather than failing). Memoized for the last
        few ``after`` values (the computation is pure)."""
        memo = self._cron_memo
        if after in memo:
            return memo[after]
        tick = self._cron_search(after)
        if len(memo) >= _CRON_MEMO:
            del memo[next(iter(memo))]
        memo[after] = tick
        return tick

    def _cron_search(self, after: float) -> float | None:
        assert self.cron is not None
        tz = ZoneInfo(self.timezone)
        wall = datetime.fromtimestamp(after, tz).replace(tzinfo=UTC, fold=0)
        # Iterate over wall-clock times as if they were UTC (no DST there),
        # then place each wall time in the real zone.
        it = croniter(self.cron, wall, second_at_beginning=len(self.cron.split()) == 6)
        try:
            for _ in range(_CRON_SEARCH_LIMIT):
                candidate: datetime = it.get_next(datetime)
                instant = wall_to_epoch(candidate.replace(tzinfo=None), tz)
                if instant > after:
                    return instant
        except (CroniterError, OverflowError, ValueError):
            return None  # no date matches, or past the calendar's end
        return None

    def jitter_offset(self, tick: float) -> float:
        """Seconds in ``[0, jitter)`` by which the fire of ``tick`` is delayed;
        every beat instance computes the same value."""
        if self.jitter <= 0:
            return 0.0
        digest = hashlib.sha256(f"{self.name}|{tick_ms(tick)}".encode()).digest()
        return self.jitter * (int.from_bytes(digest[:8], "big") / 2.0**64)

    def task_id(self, tick: float) -> str:
        """The task id of the fire of ``tick``: the same on every instance
        (UUIDv7 layout, time-ordered by tick), so a duplicate is recognisable."""
        return tick_task_id(self.name, tick)

    # -- storage ------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The definition as JSON values (without ``enabled``, kept apart)."""
        options = dict(getattr(self.task, "options", None) or {})
        data: dict[str, Any] = {
            "name": self.name,
            "task": {
                "name": self.task.name,
                "args": canonical_args(self.task.args),
                "options": fire_options(options),
            },
            "timezone": self.timezone,
            "jitter": self.jitter,
            "misfire": self.misfire,
            "misfire_grace": self.misfire_grace,
            "start_at": self.start_ts,
            "end_at": self.end_ts,
        }
        if self.cron is not None:
            data["cron"] = self.cron
        elif self.every is not None:
            data["every"] = self.every
        else:
            assert self.at is not None
            data["at"] = self.at.timestamp()
        dumps(data, what="schedule entry")
        return data

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, enabled: bool = True
    ) -> ScheduleEntry:
        """Rebuild an entry from :meth:`to_dict`. Total: anything malformed
        (a stored row written by another version, or by hand) raises
        ValueError, never another error."""
        try:
            if not isinstance(data, Mapping):
                raise TypeError(f"expected a JSON object, got {type(data).__name__}")
            task = data["task"]
            call = make_call(
                task["name"], task.get("args") or {}, **(task.get("options") or {})
            )
            return cls(
                data["name"],
                cron=data.get("cron"),
                every=data.get("every"),
                at=data.get("at"),
                task=call,
                timezone=data.get("timezone", "UTC"),
                jitter=data.get("jitter", 0.0),
                enabled=enabled,
                misfire=data.get("misfire", "run_once"),
                misfire_grace=data.get("misfire_grace", DEFAULT_MISFIRE_GRACE),
                start_at=data.get("start_at"),
                end_at=data.get("end_at"),
            )
        except ValueError:
            raise
        except Exception as exc:  # KeyError, TypeError, OverflowError, ...
            raise ValueError(
                f"malformed schedule entry {_shorten(repr(data))}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def describe(self) -> str:
        """One line: ``cron '0 9 * * *' in Europe/Paris`` and the like."""
        if self.cron is not None:
            return f"cron {self.cron!r} in {self.timezone}"
        if self.every is not None:
            return f"every {self.every:g} s"
        assert self.at is not None
        return f"once at {self.at.isoformat()}"


def wall_to_epoch(wall: datetime, tz: ZoneInfo) -> float:
    """The instant a naive wall-clock time of ``tz`` denotes.

    A repeated wall time (fall-back) gives its first occurrence; a skipped
    one (spring-forward gap) gives the instant of the jump.
    """
    first = wall.replace(tzinfo=tz, fold=0)
    ts = first.timestamp()
    if datetime.fromtimestamp(ts, tz).replace(tzinfo=None) == wall:
        return ts
    # In a gap: find the transition between the two readings of the wall time.
    low = wall.replace(tzinfo=tz, fold=1).timestamp()
    high = ts
    if low > high:
        low, high = high, low
    before = datetime.fromtimestamp(low, tz).utcoffset()
    lo, hi = math.floor(low), math.ceil(high)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return float(hi)


def tick_ms(tick: float) -> int:
    return round(tick * 1000)


def tick_task_id(name: str, tick: float) -> str:
    """A deterministic UUIDv7-layout id for the fire of ``name`` at ``tick``."""
    ms = tick_ms(tick)
    digest = hashlib.sha256(f"stem.beat|{name}|{ms}".encode()).digest()
    rand_a = int.from_bytes(digest[:2], "big") & 0xFFF
    rand_b = int.from_bytes(digest[2:10], "big") & 0x3FFF_FFFF_FFFF_FFFF
    value = (
        (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    )
    return str(uuid.UUID(int=value))


def _shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _take(it: Iterator[float], count: int) -> Iterator[float]:
    for index, value in enumerate(it):
        if index >= count:
            return
        yield value


def format_tick(tick: float, timezone: str = "UTC") -> str:
    """A tick as ISO 8601 in ``timezone``."""
    return datetime.fromtimestamp(tick, ZoneInfo(timezone)).isoformat()


__all__ = [
    "MIN_EVERY",
    "MISFIRE_POLICIES",
    "ScheduleEntry",
    "TaskCall",
    "format_tick",
    "make_call",
    "tick_task_id",
    "wall_to_epoch",
]
