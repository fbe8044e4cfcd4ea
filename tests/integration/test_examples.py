"""The README's examples run as documented."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_example(name: str, cwd: Path, timeout: float = 60) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_quickstart_prints_the_result(tmp_path: Path) -> None:
    """examples/quickstart.py prints `Result: sent to hello@example.com`."""
    out = run_example("quickstart.py", tmp_path)
    assert out.strip().splitlines()[-1] == "Result: sent to hello@example.com"


@pytest.mark.slow
def test_sqlite_demo_runs_and_resumes_after_interrupt(tmp_path: Path) -> None:
    """The SQLite demo finishes every task, and after an interrupt a rerun resumes."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "sqlite_demo.py")],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    # Interrupt once the batch is enqueued (not after a fixed delay: importing
    # stem alone can take over a second on a loaded machine).
    assert proc.stdout is not None
    first = proc.stdout.readline()  # blocks until the first line, or EOF
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=60)
    out = first + rest
    assert proc.returncode == 0, err
    if "Interrupted" in out:
        assert (tmp_path / "stem-demo.db").exists()
        rerun = run_example("sqlite_demo.py", tmp_path)
        assert "Resuming" in rerun
    else:  # the machine was fast enough to finish before the signal
        rerun = run_example("sqlite_demo.py", tmp_path)
    assert "Demo finished: every task ran" in rerun
    assert " failed " not in rerun  # no task ended FAILED in the results table


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("canvas.py", "links: ['succeeded', 'succeeded', 'succeeded']"),
        ("reliability.py", "ping answered by ['w1', 'w2']"),
        ("beat.py", "ping: 7 fires"),
    ],
)
def test_feature_examples_run(tmp_path: Path, name: str, expected: str) -> None:
    """The feature examples under examples/ run and print what they promise."""
    out = run_example(name, tmp_path, timeout=120)
    assert expected in out


def test_parallel_workflow_example_gathers_quotes_and_parcels(tmp_path: Path) -> None:
    """examples/parallel_workflow.py books the cheapest of three quotes asked
    at once and packs two parcels side by side: 30 minutes, not 50."""
    out = run_example("parallel_workflow.py", tmp_path)
    assert "status: completed" in out
    assert "booked: dhl-A7 | parcels: ['parcel 1 packed', 'parcel 2 packed']" in out
    minutes = float(out.split("took ")[1].split(" minutes")[0])
    assert 30 <= minutes < 31


def test_saga_workflow_example_cancels_in_reverse(tmp_path: Path) -> None:
    """examples/saga_workflow.py fails on the sold-out flight and cancels the
    hotel, then the car."""
    out = run_example("saga_workflow.py", tmp_path)
    lines = [line.strip() for line in out.splitlines()]
    assert lines[:4] == [
        "booked car",
        "booked hotel",
        "cancelled hotel-T9",
        "cancelled car-T9",
    ]
    assert "status: failed: step 2:activity:trip.book failed" in out
    assert [line.split()[-1] for line in lines[-5:]] == [
        "done",
        "done",
        "failed",
        "done",
        "done",
    ]
