"""Service processes running workflows killed with SIGKILL: a new process
finishes the run from its checkpoints and every completed activity ran
exactly once. Real processes (``trio.run(stem.main)``) on one SQLite file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio

import stem
from tests.wf_app import LOG_ENV, app, read_log

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent.parent
SERVICE = "import trio, stem; trio.run(stem.main)"


def spawn_service(url: str, log: Path, errors: Path) -> subprocess.Popen[bytes]:
    """``trio.run(stem.main)`` for tests.wf_app:app on ``url``."""
    env = {
        **os.environ,
        "STEM_APP": "tests.wf_app:app",
        "STEM_BROKER_URL": url,
        "STEM_CONCURRENCY": "4",
        "STEM_GRACE_PERIOD": "2",
        LOG_ENV: str(log),
    }
    with open(errors, "ab") as err:
        return subprocess.Popen(
            [sys.executable, "-c", SERVICE],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


async def step_kinds(client: stem.Client, run_id: str) -> list[tuple[str, str]]:
    run = await client.workflows.get(run_id)
    assert run is not None
    return [(s.kind, s.status) for s in run.history]


async def parked(client: stem.Client, run_id: str) -> bool:
    """The run is suspended in the store (no engine holds its lease), so a
    kill now does not leave it waiting for a dead engine's lease."""
    run = await client.workflows.get(run_id)
    return run is not None and run.status == "suspended"


def counts(log: Path, kind: str = "E") -> dict[str, int]:
    found: dict[str, int] = {}
    for k, name, _task_id, _pid in read_log(log):
        if k == kind:
            found[name] = found.get(name, 0) + 1
    return found


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'wf.db'}?poll_interval=0.02"


async def test_sigkill_during_durable_sleep(url: str, tmp_path: Path) -> None:
    """Killed during the 1 s sleep, a new service finishes the run: after
    "go" is emitted it completes with B's result, and A ran exactly once."""
    log, errors = tmp_path / "log.txt", tmp_path / "errors.txt"
    first = spawn_service(url, log, errors)
    second: subprocess.Popen[bytes] | None = None
    try:
        async with stem.Client.from_url(url, app=app) as client:
            run_id = await client.workflows.start(
                "fault.sleep_then_event", params={"order": "o1"}
            )
            kinds: list[tuple[str, str]] = []

            async def sleeping() -> bool:
                kinds[:] = await step_kinds(client, run_id)
                return ("sleep", "pending") in kinds and await parked(client, run_id)

            with trio.fail_after(60):
                while not await sleeping():
                    assert first.poll() is None, errors.read_text()
                    await trio.sleep(0.01)
            kill(first)
            assert counts(log) == {"wf.a": 1}
            second = spawn_service(url, log, errors)
            with trio.fail_after(60):
                while await client.workflows.emit("go", {"ok": True}) != [run_id]:
                    assert second.poll() is None, errors.read_text()
                    await trio.sleep(0.05)
            run = await client.workflows.wait(run_id, timeout=60)
        assert run.result == "b:a:o1:{'ok': True}"
        assert counts(log) == {"wf.a": 1, "wf.b": 1}
        assert [s.kind for s in run.history] == [
            "activity",
            "sleep",
            "event",
            "activity",
        ]
    finally:
        kill(first)
        if second is not None:
            kill(second)


async def test_sigkill_during_an_activity(url: str, tmp_path: Path) -> None:
    """Killed while an activity runs, the activity runs again on the new
    service (at least once) and the run completes; the activity completed
    before the kill ran exactly once."""
    log, errors = tmp_path / "log.txt", tmp_path / "errors.txt"
    first = spawn_service(url, log, errors)
    second: subprocess.Popen[bytes] | None = None
    try:
        async with stem.Client.from_url(url, app=app) as client:
            run_id = await client.workflows.start(
                "fault.through_slow", params={"order": "o2"}
            )
            with trio.fail_after(60):
                while counts(log, "S").get("wf.slow", 0) < 1:
                    assert first.poll() is None, errors.read_text()
                    await trio.sleep(0.01)
            kill(first)
            second = spawn_service(url, log, errors)
            run = await client.workflows.wait(run_id, timeout=90)
        assert run.result == "b:a:o2:slow done"
        ended = counts(log)
        assert ended == {"wf.a": 1, "wf.slow": 1, "wf.b": 1}
        assert counts(log, "S")["wf.slow"] == 2
    finally:
        kill(first)
        if second is not None:
            kill(second)


async def test_sigkill_during_a_gather(url: str, tmp_path: Path) -> None:
    """Killed while the slow branch of a gather runs (the other branch
    finished), a new service runs only the unfinished branch again: A ran
    exactly once and the run completes with both results."""
    log, errors = tmp_path / "log.txt", tmp_path / "errors.txt"
    first = spawn_service(url, log, errors)
    second: subprocess.Popen[bytes] | None = None
    try:
        async with stem.Client.from_url(url, app=app) as client:
            run_id = await client.workflows.start(
                "fault.gather_then_b", params={"order": "o3"}
            )
            with trio.fail_after(60):
                while not (
                    counts(log, "S").get("wf.slow", 0) == 1
                    and ("activity", "done") in await step_kinds(client, run_id)
                    and await parked(client, run_id)
                ):
                    assert first.poll() is None, errors.read_text()
                    await trio.sleep(0.01)
            kill(first)
            second = spawn_service(url, log, errors)
            run = await client.workflows.wait(run_id, timeout=90)
        assert run.result == "b:a:o3:slow done"
        assert counts(log) == {"wf.a": 1, "wf.slow": 1, "wf.b": 1}
        assert counts(log, "S")["wf.slow"] == 2
        assert [(s.index, s.name) for s in run.history] == [
            (0, "wf.a"),
            (1, "wf.slow"),
            (2, "wf.b"),
        ]
    finally:
        kill(first)
        if second is not None:
            kill(second)


async def test_sigkill_during_a_compensation(url: str, tmp_path: Path) -> None:
    """Killed while the second undo of a saga runs, a new service replays the
    failure and finishes the compensation: the first undo is not run again,
    the interrupted one runs again, and the run fails with the original
    error."""
    log, errors = tmp_path / "log.txt", tmp_path / "errors.txt"
    first = spawn_service(url, log, errors)
    second: subprocess.Popen[bytes] | None = None
    try:
        async with stem.Client.from_url(url, app=app) as client:
            run_id = await client.workflows.start(
                "fault.saga_then_fail", params={"order": "o4"}
            )
            with trio.fail_after(60):
                while not (
                    counts(log, "S").get("wf.slow_undo", 0) == 1
                    and await parked(client, run_id)
                ):
                    assert first.poll() is None, errors.read_text()
                    await trio.sleep(0.01)
            kill(first)
            second = spawn_service(url, log, errors)
            with pytest.raises(stem.WorkflowFailed) as info:
                await client.workflows.wait(run_id, timeout=90)
            run = await client.workflows.get(run_id)
        assert info.value.error is not None
        assert info.value.error.type == "stem.ActivityFailed"
        assert "cannot finish o4" in info.value.error.message
        assert counts(log) == {
            "wf.a": 1,
            "wf.b": 1,
            "wf.undo": 1,
            "wf.slow_undo": 1,
        }
        assert counts(log, "S")["wf.fail"] == 1
        assert counts(log, "S")["wf.slow_undo"] == 2
        assert run is not None
        assert [(s.name, s.status) for s in run.history] == [
            ("wf.a", "done"),
            ("wf.b", "done"),
            ("wf.fail", "failed"),
            ("wf.undo", "done"),
            ("wf.slow_undo", "done"),
        ]
    finally:
        kill(first)
        if second is not None:
            kill(second)
