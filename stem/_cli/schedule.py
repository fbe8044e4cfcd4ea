"""``stem schedule``: list, show, add, remove, enable, disable and dry-run the
beat scheduler's entries (stored in the backend, shared by every beat)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import click

from .._canvas import signature
from .._clock import now
from .._schedule import MIN_EVERY, ScheduleEntry
from ..contracts import ScheduleExists, ScheduleNotFound
from ._common import (
    EXIT_CONFIG,
    app_option,
    echo,
    echo_json,
    fail,
    get_app,
    iso,
    json_option,
    open_client,
    parse_when,
    print_table,
    run,
    url_option,
)


@click.group()
def schedule() -> None:
    """Beat's schedule entries: cron, interval and one-off task calls.

    Entries live in the backend, so a change here reaches every running beat
    (within about a second). Entries registered in code
    (stem.App(schedules=[...])) are stored when a beat starts.
    """


def _entry_of(record: Any) -> Any:
    """The record's entry, or None when its stored definition is unreadable."""
    try:
        return ScheduleEntry.from_dict(record.definition, enabled=record.enabled)
    except ValueError:
        return None


def _task_name(definition: Any) -> Any:
    task = definition.get("task") if isinstance(definition, Mapping) else None
    return task.get("name") if isinstance(task, Mapping) else None


def _next_fires(entry: Any, record: Any, at: float, count: int) -> list[float]:
    after = max(at, record.last_fire or at) if record is not None else at
    anchor = record.changed_at if record is not None else at
    return entry.fire_times(after, anchor=anchor, count=count) if entry else []


def _record_data(record: Any, at: float, count: int = 1) -> dict[str, Any]:
    entry = _entry_of(record)
    upcoming = _next_fires(entry, record, at, count) if record.enabled else []
    return {
        "name": record.name,
        "schedule": entry.describe() if entry else "unreadable definition",
        "task": _task_name(record.definition),
        "enabled": record.enabled,
        "next_fires": [iso(t) for t in upcoming],
        "last_fire": iso(record.last_fire),
        "last_fired_at": iso(record.last_fired_at),
        "fired_by": record.fired_by,
        "fire_count": record.fire_count,
        "version": record.version,
        "created_at": iso(record.created_at),
        "changed_at": iso(record.changed_at),
        "definition": (
            dict(record.definition)
            if isinstance(record.definition, Mapping)
            else record.definition
        ),
    }


@schedule.command("list")
@url_option
@json_option
def schedule_list(url: str, as_json: bool) -> None:
    """List the stored entries with their next and last fire.

    \b
    Examples:
      stem schedule list
      stem schedule list --json
    """

    async def go() -> list[Any]:
        async with open_client(url) as client:
            records: list[Any] = await client.backend.schedules.list()
            return records

    at = now()
    data = [_record_data(r, at) for r in run(go)]
    if as_json:
        echo_json(data)
        return
    if not data:
        echo("No schedule entries.")
        return
    print_table(
        "Schedule entries",
        ["name", "schedule", "task", "enabled", "next fire", "last fire", "fires"],
        [
            [
                d["name"],
                d["schedule"],
                d["task"],
                "yes" if d["enabled"] else "no",
                d["next_fires"][0] if d["next_fires"] else "-",
                d["last_fire"] or "-",
                d["fire_count"],
            ]
            for d in data
        ],
    )


@schedule.command("show")
@click.argument("name")
@click.option("-n", "--count", type=click.IntRange(min=1), default=5, show_default=True)
@url_option
@json_option
def schedule_show(name: str, count: int, url: str, as_json: bool) -> None:
    """Show entry NAME: its definition, fire record and next fire times."""

    async def go() -> Any:
        async with open_client(url) as client:
            return await client.backend.schedules.get(name)

    record = run(go)
    if record is None:
        fail(f"no schedule entry named {name!r}")
    data = _record_data(record, now(), count)
    if as_json:
        echo_json(data)
        return
    for key, value in data.items():
        if key == "definition":
            value = json.dumps(value, sort_keys=True)
        elif isinstance(value, list):
            value = ", ".join(value) or "-"
        echo(f"{key:>14}: {value if value is not None else '-'}")


def _build_entry(
    name: str,
    task: str,
    args: str | None,
    queue: str | None,
    cron: str | None,
    every: float | None,
    at: str | None,
    timezone: str,
    jitter: float,
    misfire: str,
    enabled: bool,
) -> Any:

    try:
        parsed_args = json.loads(args) if args else None
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--args") from None
    when = None
    if at is not None:
        when = datetime.fromtimestamp(parse_when(at, option="--at")).astimezone()
    options = {"queue": queue} if queue else {}
    try:
        return ScheduleEntry(
            name,
            cron=cron,
            every=every,
            at=when,
            task=signature(task, parsed_args, **options),
            timezone=timezone,
            jitter=jitter,
            misfire=misfire,  # type: ignore[arg-type]
            enabled=enabled,
        )
    except (TypeError, ValueError) as exc:
        fail(str(exc), EXIT_CONFIG)


_timing = [
    click.option(
        "--cron", help="Cron expression: 5 fields, or 6 with leading seconds."
    ),
    click.option(
        "--every",
        type=float,
        help=f"Interval in seconds (at least {MIN_EVERY:g}).",
    ),
    click.option("--at", help="One fire at this time (ISO 8601 or epoch seconds)."),
    click.option(
        "--timezone", default="UTC", show_default=True, help="IANA zone of --cron."
    ),
]


def _with_timing(fn: Any) -> Any:
    for option in reversed(_timing):
        fn = option(fn)
    return fn


@schedule.command("add")
@click.argument("name")
@click.option("--task", "task_name", required=True, help="Name of the task to call.")
@click.option("--args", help="Task arguments as a JSON object.")
@click.option("--queue", help="Queue of the fired tasks (default: the task's).")
@_with_timing
@click.option("--jitter", type=float, default=0.0, show_default=True)
@click.option(
    "--misfire",
    type=click.Choice(["run_once", "skip"]),
    default="run_once",
    show_default=True,
)
@click.option("--disabled", is_flag=True, help="Store it disabled.")
@click.option("--replace", is_flag=True, help="Replace an entry of the same name.")
@url_option
@json_option
def schedule_add(
    name: str,
    task_name: str,
    args: str | None,
    queue: str | None,
    cron: str | None,
    every: float | None,
    at: str | None,
    timezone: str,
    jitter: float,
    misfire: str,
    disabled: bool,
    replace: bool,
    url: str,
    as_json: bool,
) -> None:
    """Store entry NAME; every running beat picks it up.

    \b
    Examples:
      stem schedule add report --task reports.daily --cron "0 9 * * 1-5" \\
          --timezone Europe/Paris
      stem schedule add ping --task health.ping --every 30 --args '{"deep": true}'
      stem schedule add once --task db.vacuum --at 2030-01-01T03:00:00+00:00
    """

    entry = _build_entry(
        name,
        task_name,
        args,
        queue,
        cron,
        every,
        at,
        timezone,
        jitter,
        misfire,
        not disabled,
    )

    async def go() -> Any:
        async with open_client(url) as client:
            store = client.backend.schedules
            try:
                return await store.add(name, entry.to_dict(), enabled=entry.enabled)
            except ScheduleExists:
                if not replace:
                    fail(f"schedule entry {name!r} exists (use --replace)")
                return await store.update(
                    name, definition=entry.to_dict(), enabled=entry.enabled
                )

    record = run(go)
    data = _record_data(record, now())
    if as_json:
        echo_json(data)
    else:
        echo(f"Stored {name}: {data['schedule']}, task {task_name}.")


@schedule.command("remove")
@click.argument("name")
@url_option
@json_option
def schedule_remove(name: str, url: str, as_json: bool) -> None:
    """Delete entry NAME (an entry registered in code comes back when a beat
    of that app starts)."""

    async def go() -> bool:
        async with open_client(url) as client:
            removed: bool = await client.backend.schedules.remove(name)
            return removed

    removed = run(go)
    if as_json:
        echo_json({"name": name, "removed": removed})
    elif removed:
        echo(f"Removed {name}.")
    if not removed:
        fail(f"no schedule entry named {name!r}")


def _set_enabled(name: str, enabled: bool, url: str, as_json: bool) -> None:

    async def go() -> Any:
        async with open_client(url) as client:
            try:
                return await client.backend.schedules.update(name, enabled=enabled)
            except ScheduleNotFound:
                fail(f"no schedule entry named {name!r}")

    record = run(go)
    if as_json:
        echo_json(_record_data(record, now()))
    else:
        echo(f"{'Enabled' if enabled else 'Disabled'} {name}.")


@schedule.command("enable")
@click.argument("name")
@url_option
@json_option
def schedule_enable(name: str, url: str, as_json: bool) -> None:
    """Enable entry NAME (missed ticks while disabled are not fired)."""
    _set_enabled(name, True, url, as_json)


@schedule.command("disable")
@click.argument("name")
@url_option
@json_option
def schedule_disable(name: str, url: str, as_json: bool) -> None:
    """Disable entry NAME: no beat fires it until it is enabled."""
    _set_enabled(name, False, url, as_json)


@schedule.command("dry-run")
@click.argument("name", required=False)
@click.option(
    "-n", "--count", type=click.IntRange(min=1), default=10, show_default=True
)
@_with_timing
@app_option()
@url_option
@json_option
def schedule_dry_run(
    name: str | None,
    count: int,
    cron: str | None,
    every: float | None,
    at: str | None,
    timezone: str,
    app_spec: str | None,
    url: str,
    as_json: bool,
) -> None:
    """Print the next COUNT fire times, without firing anything.

    Of a stored entry NAME, of entry NAME of --app, or of a timing given
    inline (--cron/--every/--at with --timezone).

    \b
    Examples:
      stem schedule dry-run report
      stem schedule dry-run --cron "30 2 * * *" --timezone Europe/Paris -n 3
    """

    at_now = now()
    entry: Any = None
    record: Any = None
    if name is None:
        entry = _build_entry(
            "dry-run",
            "dry-run",
            None,
            None,
            cron,
            every,
            at,
            timezone,
            0.0,
            "run_once",
            True,
        )
    else:
        loaded = get_app(app_spec)
        if loaded is not None and name in loaded.schedules:
            entry = loaded.schedules[name]
        else:

            async def go() -> Any:
                async with open_client(url) as client:
                    return await client.backend.schedules.get(name)

            record = run(go)
            if record is None:
                fail(f"no schedule entry named {name!r}")
            entry = _entry_of(record)
            if entry is None:
                fail(f"schedule entry {name!r} has an unreadable definition")
    ticks = _next_fires(entry, record, at_now, count)
    zone = entry.timezone
    rows = [
        {
            "tick": iso(t),
            "local": datetime.fromtimestamp(t, _zone(zone)).isoformat(),
            "fires_at": iso(t + entry.jitter_offset(t)),
        }
        for t in ticks
    ]
    if as_json:
        echo_json({"entry": entry.name, "timezone": zone, "fires": rows})
        return
    echo(f"{entry.describe()}: next {len(rows)} fire times")
    for row in rows:
        echo(f"  {row['local']}  ({row['tick']})")


def _zone(name: str) -> Any:

    return ZoneInfo(name)
