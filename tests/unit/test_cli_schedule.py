"""``stem schedule`` through click's CliRunner on a SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from stem.cli import main


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/s.db"


def test_schedule_commands_round_trip(url: str) -> None:
    """add, list, show, disable, enable and remove work on stored entries, with --json."""
    added = invoke(
        "schedule", "add", "report", "--task", "reports.daily",
        "--cron", "0 9 * * 1-5", "--timezone", "Europe/Paris",
        "--args", '{"kind": "daily"}', "--queue", "reports", "--url", url, "--json",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    data = json.loads(added.stdout)
    assert data["schedule"] == "cron '0 9 * * 1-5' in Europe/Paris"
    assert data["definition"]["task"] == {
        "name": "reports.daily",
        "args": {"kind": "daily"},
        "options": {"queue": "reports"},
    }
    assert invoke("schedule", "add", "ping", "--task", "p", "--every", "30",
                  "--url", url).exit_code == 0  # fmt: skip
    listed = json.loads(invoke("schedule", "list", "--url", url, "--json").stdout)
    assert [d["name"] for d in listed] == ["ping", "report"]
    assert all(len(d["next_fires"]) == 1 for d in listed)
    shown = json.loads(
        invoke("schedule", "show", "report", "-n", "3", "--url", url, "--json").stdout
    )
    assert [t[11:16] for t in shown["next_fires"]] in (
        [["07:00"] * 3, ["08:00"] * 3]  # 09:00 Paris in summer or winter time
    )
    disabled = invoke("schedule", "disable", "ping", "--url", url, "--json")
    assert json.loads(disabled.stdout)["enabled"] is False
    assert json.loads(disabled.stdout)["next_fires"] == []
    assert "Enabled ping." in invoke("schedule", "enable", "ping", "--url", url).stdout
    assert "Removed ping." in invoke("schedule", "remove", "ping", "--url", url).stdout
    missing = invoke("schedule", "remove", "ping", "--url", url)
    assert missing.exit_code == 1
    assert "no schedule entry named 'ping'" in missing.stderr


def test_add_refuses_duplicates_and_bad_timings(url: str) -> None:
    """A second add needs --replace; an invalid cron is a usage error naming it."""
    args = ["schedule", "add", "x", "--task", "t", "--every", "10", "--url", url]
    assert invoke(*args).exit_code == 0
    again = invoke(*args)
    assert again.exit_code == 1
    assert "--replace" in again.stderr
    assert invoke(*args, "--replace").exit_code == 0
    bad = invoke("schedule", "add", "y", "--task", "t", "--cron", "99 * * * *",
                 "--url", url)  # fmt: skip
    assert bad.exit_code == 2
    assert "invalid cron expression" in bad.output


def test_dry_run_prints_next_fire_times_across_dst(url: str) -> None:
    """dry-run of an inline cron lists the next N fire times in the zone."""
    result = invoke(
        "schedule", "dry-run", "--cron", "30 2 * * *", "--timezone", "Europe/Paris",
        "-n", "4", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    fires = json.loads(result.stdout)["fires"]
    assert len(fires) == 4
    assert all(f["local"][11:16] in ("02:30", "03:00") for f in fires)
    stored = invoke("schedule", "add", "s", "--task", "t", "--every", "60",
                    "--url", url)  # fmt: skip
    assert stored.exit_code == 0
    text = invoke("schedule", "dry-run", "s", "-n", "2", "--url", url).stdout
    assert text.startswith("every 60 s: next 2 fire times")
