"""The issue's attack on a real ``stem worker`` process: with
STEM_SIGNING_KEYS and STEM_REQUIRE_SIGNED=1, a raw ``PUBLISH`` of a shutdown
request is ignored and logged and the worker keeps serving, while ``stem
control shutdown`` with the keys stops it, logged with its origin and key."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from stem.adapters.redis._conn import Keys
from tests.cli_process import ROOT, STEM, run_stem

pytestmark = pytest.mark.redis

SECRET = base64.b64encode(b"a shared secret for this one test").decode()


def _wait_for(path: Path, text: str, proc: subprocess.Popen[Any]) -> str:
    deadline = time.monotonic() + 60
    while text not in (log := path.read_text()):
        assert proc.poll() is None or text in path.read_text(), log
        assert time.monotonic() < deadline, log
        time.sleep(0.05)
    return log


def test_a_published_shutdown_is_ignored_and_a_signed_one_obeyed(
    redis_server: Any, tmp_path: Path
) -> None:
    """PUBLISH stem:broadcast '{"kind":"stem.control","command":"shutdown",...}'
    no longer stops a worker that requires signatures; the signed command
    from the CLI does, and the worker exits 0."""
    ns = f"sig{uuid.uuid4().hex[:8]}"
    url = f"redis://127.0.0.1:{redis_server.port}/0?namespace={ns}"
    env = {
        **os.environ,
        "STEM_SIGNING_KEYS": f"ops-1={SECRET}",
        "STEM_REQUIRE_SIGNED": "1",
    }
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as sink:
        proc = subprocess.Popen(
            [STEM, "worker", "--app", "tests.cli_app:app", "--url", url],
            cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            _wait_for(log_path, "ready on", proc)
            assert "signing: signs with key 'ops-1'; verifies ops-1;" in (
                log_path.read_text()
            )
            attack = {
                "kind": "stem.control",
                "command": "shutdown",
                "args": {"mode": "hard"},
            }
            raw = redis.Redis(host="127.0.0.1", port=redis_server.port)
            try:
                heard = raw.publish(Keys(ns, db=0).broadcast, json.dumps(attack))
            finally:
                raw.close()
            assert heard >= 1  # the worker's subscription received it
            _wait_for(log_path, "ignored control command 'shutdown'", proc)
            ping = run_stem("inspect", "ping", "--url", url, env=env)
            assert ping.returncode == 0, ping.stderr
            assert proc.poll() is None
            unsigned = run_stem(
                "inspect", "ping", "--url", url, "--timeout", "1",
                env={"STEM_SIGNING_KEYS": "", "STEM_REQUIRE_SIGNED": ""},
            )  # fmt: skip
            assert unsigned.returncode == 1  # no worker answers the unsigned
            stop = run_stem(
                "control", "shutdown", "--mode", "warm", "--yes", "--url", url, env=env
            )
            assert stop.returncode == 0, stop.stderr
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)
    log = log_path.read_text()
    assert "the request is not signed" in log
    assert "obeying control command 'shutdown'" in log
    assert "signed by key 'ops-1'" in log
    assert SECRET not in log
