"""`stem queues` after `stem revoke`: revoked waiting tasks are not counted as
pending or delayed (their messages are deleted with the revocation)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli_process import run_stem


def test_revoked_waiting_tasks_leave_the_queue_counts(tmp_path: Path) -> None:
    """Revoking a pending and a delayed task takes them out of `stem queues`
    at once; `stem result` shows them revoked; the other task stays pending."""
    url = f"sqlite:///{tmp_path}/q.db"

    def enqueue(*extra: str) -> str:
        proc = run_stem("enqueue", "job", "--url", url, *extra)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    keep, pending, delayed = enqueue(), enqueue(), enqueue("--countdown", "3600")
    before = json.loads(run_stem("queues", "--url", url, "--json").stdout)
    assert [(q["pending"], q["delayed"]) for q in before] == [(2, 1)]
    for task_id in (pending, delayed):
        revoked = run_stem("revoke", task_id, "--url", url)
        assert revoked.returncode == 0, revoked.stderr
    after = json.loads(run_stem("queues", "--url", url, "--json").stdout)
    assert [(q["queue"], q["pending"], q["delayed"]) for q in after] == [
        ("default", 1, 0)
    ]
    for task_id in (pending, delayed):
        shown = json.loads(run_stem("result", task_id, "--url", url, "--json").stdout)
        assert shown["state"] == "revoked"
    kept = json.loads(run_stem("result", keep, "--url", url, "--json").stdout)
    assert kept["state"] == "queued"
