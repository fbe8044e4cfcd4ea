"""`stem dlq` as documented, through the real executable: `dlq list` defaults
to the queue "default", `dlq show`/`dlq retry TASK_ID` find the task in any
queue, and a retried task's result reads "queued" until it runs again."""

from __future__ import annotations

import json
from pathlib import Path

import trio

import stem
from tests import cli_app
from tests.cli_process import one_line_error, run_stem


def dead_letters(url: str) -> tuple[str, str]:
    """One dead letter in "default" and one in "mail" (a failing task)."""

    async def go() -> tuple[str, str]:
        async with stem.Client.from_url(url, app=cli_app.app) as client:
            default = await client.enqueue("cli.boom", {"n": 1})
            mail = await client.enqueue("cli.boom", {"n": 2}, queue="mail")
            async with client.worker(queues=["default", "mail"], claim_wait=0.05):
                for task_id in (default, mail):
                    await client.wait_for(task_id, timeout=20)
            await client.flush()
        return default, mail

    return trio.run(go)


def test_dlq_commands_find_tasks_without_a_queue(tmp_path: Path) -> None:
    """`stem dlq list` lists "default"; `dlq show ID` and `dlq retry ID` find a
    task dead in "mail"; the retried task's result then reads "queued"."""
    url = f"sqlite:///{tmp_path}/d.db"
    in_default, in_mail = dead_letters(url)
    listed = run_stem("dlq", "list", "--url", url, "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["task_id"] for r in json.loads(listed.stdout)] == [in_default]
    shown = run_stem("dlq", "show", in_mail, "--url", url, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["queue"] == "mail"
    retried = run_stem("dlq", "retry", in_mail, "--url", url)
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.strip() == f"retried {in_mail} (queue mail)"
    state = run_stem("result", in_mail, "--url", url, "--json")
    assert state.returncode == 0, state.stderr
    assert (json.loads(state.stdout)["state"], json.loads(state.stdout)["attempt"]) == (
        "queued",
        1,
    )
    legacy = run_stem("dlq", "retry", "default", in_default, "--url", url)
    assert legacy.stdout.strip() == f"retried {in_default} (queue default)"
    missing = run_stem("dlq", "retry", "nope", "--url", url)
    assert "no dead letter in any queue for: nope" in one_line_error(missing, 1)
    queues = json.loads(run_stem("queues", "--url", url, "--json").stdout)
    assert {q["queue"]: (q["pending"], q["dead"]) for q in queues} == {
        "default": (1, 0),
        "mail": (1, 0),
    }
