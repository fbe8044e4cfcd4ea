"""Running the real ``stem`` executable in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

#: The ``stem`` console script installed beside this interpreter.
STEM = str(Path(sys.executable).with_name("stem"))
ROOT = Path(__file__).resolve().parent.parent


def run_stem(
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """``stem ARGS...`` to completion, with text stdout and stderr."""
    full = {k: v for k, v in os.environ.items() if k != "STEM_DEBUG"}
    full.update(env or {})
    return subprocess.run(
        [STEM, *args],
        capture_output=True,
        text=True,
        env=full,
        cwd=cwd or ROOT,
        timeout=timeout,
        check=False,
    )


def one_line_error(proc: subprocess.CompletedProcess[str], code: int) -> str:
    """Assert ``proc`` exited ``code`` with one ``stem: ...`` line on stderr
    (never a traceback); return that line."""
    lines = proc.stderr.splitlines()
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("stem: "), proc.stderr
    return lines[0]
