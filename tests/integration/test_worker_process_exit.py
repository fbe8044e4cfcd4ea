"""A `stem worker` process (and `trio.run(stem.main)`) ends when its worker
stops: exit 0 after `stem control shutdown`, 1 with a log line when the
supervisor gives up on a crashing worker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

import stem
from stem._config import Settings
from stem._main import serve
from stem.actors._worker import Worker
from tests.cli_process import ROOT, STEM, run_stem
from tests.e2e_app import app as e2e_app


def start(args: list[str], err: Path, env: dict[str, str] | None = None) -> Any:
    with open(err, "ab") as stderr:
        return subprocess.Popen(
            args,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


async def wait_for_worker(url: str, proc: Any, err: Path) -> None:
    async with stem.Client.from_url(url) as client:
        with trio.fail_after(30):
            while not await client.workers():
                assert proc.poll() is None, err.read_text()
                await trio.sleep(0.05)


async def exit_code(proc: Any, timeout: float = 30) -> int:
    try:
        code: int = await trio.to_thread.run_sync(proc.wait, timeout)
        return code
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("mode", ["soft", "hard"])
async def test_control_shutdown_ends_the_stem_worker_process(
    tmp_path: Path, mode: str
) -> None:
    """`stem control shutdown --mode soft|hard --yes` stops the worker, and the
    `stem worker` process then exits 0, saying why."""
    url = f"sqlite:///{tmp_path}/w.db"
    err = tmp_path / "worker.err"
    proc = start([STEM, "worker", "--app", "tests.e2e_app:app", "--url", url], err)
    await wait_for_worker(url, proc, err)
    done = await trio.to_thread.run_sync(
        lambda: run_stem("control", "shutdown", "--mode", mode, "--yes", "--url", url)
    )
    assert done.returncode == 0, done.stderr
    assert f"{mode} shutdown" in done.stdout
    assert await exit_code(proc) == 0, err.read_text()
    assert "stopped (remote shutdown); shutting down" in err.read_text()


async def test_control_shutdown_ends_trio_run_stem_main(tmp_path: Path) -> None:
    """A service run as `trio.run(stem.main)` exits 0 after a remote warm shutdown."""
    url = f"sqlite:///{tmp_path}/m.db"
    err = tmp_path / "main.err"
    env = {"STEM_APP": "tests.e2e_app:app", "STEM_BROKER_URL": url}
    code = "import trio, stem; trio.run(stem.main)"
    proc = start([sys.executable, "-c", code], err, env)
    await wait_for_worker(url, proc, err)
    async with stem.Client.from_url(url) as client:
        replies = await client.control.shutdown(mode="warm", timeout=5)
    assert [r.ok for r in replies] == [True]
    assert await exit_code(proc) == 0, err.read_text()


async def test_serve_exits_1_when_the_supervisor_gives_up(
    autojump_clock: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """When the worker keeps crashing until its supervisor gives up, serve()
    logs why at CRITICAL and raises SystemExit(1) (simulated time)."""

    async def crashing_fetch(self: Worker, scope: trio.CancelScope) -> None:
        await trio.sleep(0.05)
        raise RuntimeError("simulated bug in the claiming loop")

    monkeypatch.setattr(Worker, "_fetch", crashing_fetch)
    settings = Settings(broker_url="memory://", beat="off")
    with pytest.raises(SystemExit) as exited:
        await serve(settings, e2e_app)
    assert exited.value.code == 1
    [line] = [
        r for r in caplog.records if r.name == "stem.main" and r.levelname == "CRITICAL"
    ]
    assert "gave up" in line.getMessage()
    assert "simulated bug in the claiming loop" in line.getMessage()


@pytest.mark.slow
async def test_stem_worker_exits_1_when_the_supervisor_gives_up(
    tmp_path: Path,
) -> None:
    """A `stem worker` whose worker crashes until the supervisor gives up exits
    with status 1 and a CRITICAL line naming the cause (about 30 s of restarts
    with backoff)."""
    url = f"sqlite:///{tmp_path}/c.db"
    err = tmp_path / "crash.err"
    proc = start([STEM, "worker", "--app", "tests.crash_app:app", "--url", url], err)
    assert await exit_code(proc, timeout=90) == 1
    text = err.read_text()
    assert "CRITICAL stem.main: the runtime gave up, exiting with status 1" in text
    assert "simulated bug in the worker's claiming loop" in text
    assert "Traceback" not in text.split("CRITICAL", 1)[1]
