"""``stem wf`` against a SQLite file, driven through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner, Result

import stem
from stem.cli import main
from tests.wf_app import app

APP = "tests.wf_app:app"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/wf.db?poll_interval=0.02"


def test_wf_commands_round_trip(url: str) -> None:
    """start, ls, show, emit, send and cancel work on a stored run, with
    --json output and one-line errors for bad input."""
    started = invoke(
        "wf",
        "start",
        "fault.sleep_then_event",
        "--params",
        '{"order": "c1"}',
        "--run-id",
        "cli-1",
        "--app",
        APP,
        "--url",
        url,
    )
    assert started.exit_code == 0, started.output
    assert started.output.strip() == "cli-1"
    dup = invoke(
        "wf",
        "start",
        "fault.sleep_then_event",
        "--run-id",
        "cli-1",
        "--params",
        '{"order": "c1"}',
        "--app",
        APP,
        "--url",
        url,
    )
    assert dup.exit_code == 1
    assert "exists" in dup.output
    bad = invoke(
        "wf",
        "start",
        "fault.sleep_then_event",
        "--params",
        "{nope",
        "--app",
        APP,
        "--url",
        url,
    )
    assert bad.exit_code == 2
    listed = json.loads(invoke("wf", "ls", "--url", url, "--json").output)
    assert [(r["run_id"], r["status"]) for r in listed] == [("cli-1", "pending")]

    async def drive_to_event() -> None:
        async with stem.Client.from_url(url, app=app) as client, client.worker():
            with trio.fail_after(30):
                while True:
                    run = await client.workflows.get("cli-1")
                    assert run is not None
                    if run.current_step == "2:event:go":
                        return
                    await trio.sleep(0.05)

    trio.run(drive_to_event)
    shown = json.loads(invoke("wf", "show", "cli-1", "--url", url, "--json").output)
    assert shown["status"] == "suspended"
    assert [s["kind"] for s in shown["history"]] == ["activity", "sleep", "event"]
    text = invoke("wf", "show", "cli-1", "--url", url).output
    assert "suspended" in text
    emitted = json.loads(
        invoke("wf", "emit", "go", "--payload", '"yes"', "--url", url, "--json").output
    )
    assert emitted == {"topic": "go", "delivered_to": ["cli-1"]}
    sent = invoke("wf", "send", "cli-1", "later", "--payload", "1", "--url", url)
    assert sent.exit_code == 0, sent.output
    cancelled = invoke("wf", "cancel", "cli-1", "--url", url)
    assert cancelled.exit_code == 0, cancelled.output
    assert "cancel requested" in cancelled.output
    missing = invoke("wf", "show", "nope", "--url", url)
    assert missing.exit_code == 1
    assert "no workflow run" in missing.output
