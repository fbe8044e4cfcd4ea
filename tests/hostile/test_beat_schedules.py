"""Hostile schedules: impossible crons, tiny intervals, entries that fail or no
longer decode; beat isolates them and keeps firing the others (MockClock)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio

import stem
from stem._schedule import MIN_EVERY, ScheduleEntry
from stem._signals import ScheduleEvent
from tests.cli_process import one_line_error, run_stem


def every(name: str, seconds: float) -> ScheduleEntry:
    return ScheduleEntry(name, every=seconds, task=stem.signature("job"))


def dispatched(app: stem.App) -> list[ScheduleEvent]:
    seen: list[ScheduleEvent] = []
    app.signals.connect("schedule_dispatched", seen.append)
    return seen


@pytest.mark.parametrize("cron", ["0 0 30 2 *", "0 0 31 4 *", "0 0 31 2,4,6 *"])
def test_a_cron_that_never_fires_is_refused(cron: str) -> None:
    """A cron expression no date matches is refused when the entry is built."""
    with pytest.raises(ValueError, match="never fires"):
        ScheduleEntry("x", cron=cron, task=stem.signature("job"))


def test_rare_but_possible_crons_are_accepted() -> None:
    """February 29 (every four years) and a six-field cron are accepted."""
    leap = ScheduleEntry("leap", cron="0 0 29 2 *", task=stem.signature("job"))
    assert leap.next_fire(1_700_000_000.0, anchor=0.0) is not None
    ScheduleEntry("s", cron="*/10 * * * * *", task=stem.signature("job"))


@pytest.mark.parametrize("seconds", [1e-9, 0.5, 0.999])
def test_intervals_below_the_minimum_are_refused(seconds: float) -> None:
    """every= below one second is refused with the documented minimum."""
    with pytest.raises(ValueError, match="at least 1 second"):
        every("fast", seconds)
    assert every("ok", MIN_EVERY).every == 1.0


@pytest.mark.parametrize("name", ["report\n", "a\x1b[2Jb", "x\x85", ""])
def test_entry_names_with_control_characters_are_refused(name: str) -> None:
    """Entry names are matched whole: a trailing newline or an escape is refused."""
    with pytest.raises(ValueError, match="printable"):
        every(name, 60)


@pytest.mark.parametrize(
    "definition",
    [
        [],
        "text",
        {"name": "x"},
        {"name": "x", "task": "job", "every": 60},
        {"name": "x", "task": {"name": "job"}, "every": "soon"},
        {"name": "x", "task": {"name": "job"}, "at": 1e300},
        {"name": "x", "task": {"name": "job"}, "cron": "0 0 30 2 *"},
        {"name": "x", "task": {"name": "job", "args": [1]}, "every": 60},
    ],
)
def test_from_dict_turns_any_malformed_row_into_value_error(definition: Any) -> None:
    """Rebuilding an entry from a malformed stored definition raises ValueError only."""
    with pytest.raises(ValueError):
        ScheduleEntry.from_dict(definition)


async def test_an_unreadable_row_is_skipped_and_the_others_fire(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A stored row with an impossible cron (written before the check) or no task
    is logged and skipped; a good entry beside it fires on every tick."""
    app = stem.App(schedules=[every("good", 10.0)])
    seen = dispatched(app)
    async with stem.Client.in_memory(app=app) as client:
        store = client.backend.schedules
        await store.add(
            "feb30", {"name": "feb30", "cron": "0 0 30 2 *", "task": {"name": "job"}}
        )
        await store.add("broken", {"name": "broken", "every": 5})
        async with client.beat() as beat:
            await trio.sleep(35.0)
            stats = await beat.statistics()
    assert [e.entry for e in seen] == ["good"] * 3
    assert stats.fired == 3
    unreadable = [r.getMessage() for r in caplog.records if "cannot be read" in r.msg]
    assert any("'feb30'" in m and "never fires" in m for m in unreadable)
    assert any("'broken'" in m for m in unreadable)


async def test_a_failing_entry_is_set_aside_and_retried(
    autojump_clock: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An entry whose fire raises is logged and set aside with backoff while the
    other entry keeps its one-fire-per-tick grid; it fires once it recovers."""
    app = stem.App(schedules=[every("good", 5.0), every("bad", 5.0)])
    seen = dispatched(app)
    async with stem.Client.in_memory(app=app) as client:
        store = client.backend.schedules
        real = store.record_fire
        broken = True

        async def record_fire(name: str, **kw: Any) -> Any:
            if name == "bad" and broken:
                raise RuntimeError("a bug in one entry")
            return await real(name, **kw)

        monkeypatch.setattr(store, "record_fire", record_fire)
        async with client.beat() as beat:
            await trio.sleep(60.5)
            good_before = len([e for e in seen if e.entry == "good"])
            broken = False
            await trio.sleep(70.0)
            stats = await beat.statistics()
    assert good_before == 12
    assert len([e for e in seen if e.entry == "good"]) == 26
    assert [e for e in seen if e.entry == "bad"]
    assert stats.failed >= 3
    failures = [r for r in caplog.records if "keep firing" in r.msg]
    assert failures and all("'bad'" in r.getMessage() for r in failures)
    assert failures[0].exc_info is not None


async def test_a_store_that_cannot_list_is_retried_not_fatal(
    autojump_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A list() of the schedule store that raises (a row no adapter can decode)
    is retried with backoff; beat stays up, and fires once the store reads."""
    app = stem.App(schedules=[every("tick", 10.0)])
    seen = dispatched(app)
    async with stem.Client.in_memory(app=app) as client:
        store = client.backend.schedules
        real = store.list
        failures = 4

        async def flaky_list() -> Any:
            nonlocal failures
            if failures:
                failures -= 1
                raise ValueError("undecodable row")
            return await real()

        monkeypatch.setattr(store, "list", flaky_list)
        async with client.beat() as beat:
            await trio.sleep(31.0)
            stats = await beat.statistics()
            assert beat.is_leader
    assert stats.errors == 4
    assert [e.entry for e in seen] == ["tick"] * 3


def test_schedule_add_refuses_bad_timings_in_one_line(tmp_path: Path) -> None:
    """`stem schedule add` refuses a cron that never fires and an interval under
    the minimum with one line on stderr and exit 2, storing nothing."""
    url = f"sqlite:///{tmp_path}/s.db"
    never = run_stem("schedule", "add", "x", "--task", "t", "--cron", "0 0 30 2 *",
                     "--url", url)  # fmt: skip
    assert "never fires" in one_line_error(never, 2)
    tiny = run_stem("schedule", "add", "x", "--task", "t", "--every", "1e-9",
                    "--url", url)  # fmt: skip
    assert "at least 1 second" in one_line_error(tiny, 2)
    listed = run_stem("schedule", "list", "--url", url)
    assert (listed.returncode, listed.stdout.strip()) == (0, "No schedule entries.")


def test_schedule_list_and_show_survive_unreadable_rows(tmp_path: Path) -> None:
    """Rows stored before the checks (an impossible cron, no task) are listed as
    unreadable, never with a traceback."""
    url = f"sqlite:///{tmp_path}/s.db"

    async def store() -> None:
        async with stem.Client.from_url(url) as client:
            schedules = client.backend.schedules
            await schedules.add(
                "feb30", {"name": "feb30", "cron": "0 0 30 2 *", "task": {"name": "t"}}
            )
            await schedules.add("odd", {"name": "odd", "task": "t", "every": "x"})
            await schedules.add("ok", every("ok", 60).to_dict())

    trio.run(store)
    listed = run_stem("schedule", "list", "--url", url)
    assert listed.returncode == 0, listed.stderr
    assert listed.stderr == ""
    assert listed.stdout.count("unreadable definition") == 2
    shown = run_stem("schedule", "show", "feb30", "--url", url, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["next_fires"] == []
    dry = run_stem("schedule", "dry-run", "odd", "--url", url)
    assert "unreadable definition" in one_line_error(dry, 1)


def test_a_row_that_no_longer_decodes_does_not_hide_the_others(
    tmp_path: Path,
) -> None:
    """A SQLite schedule row whose definition is not JSON is skipped by the
    store's list() with a warning (beat and `stem schedule list` see the
    good entries); get() of it raises DecodeError."""
    url = f"sqlite:///{tmp_path}/b.db"

    def corrupt(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE schedules SET definition = '{oops' WHERE name='bad'")

    async def go() -> tuple[list[str], Exception | None]:
        async with stem.Client.from_url(url) as client:
            store = client.backend.schedules
            await store.add("bad", every("bad", 10.0).to_dict())
            await store.add("good", every("good", 10.0).to_dict())
            await client.backend.db.write(corrupt)
            names = [r.name for r in await store.list()]
            try:
                await store.get("bad")
            except stem.DecodeError as exc:
                return names, exc
            return names, None

    names, error = trio.run(go)
    assert names == ["good"]
    assert error is not None
    listed = run_stem("schedule", "list", "--url", url, "--json")
    assert listed.returncode == 0, listed.stderr
    assert [d["name"] for d in json.loads(listed.stdout)] == ["good"]
    assert "does not decode" in listed.stderr
    assert "Traceback" not in listed.stderr
