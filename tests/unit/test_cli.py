"""The ``stem`` command line, driven through click's CliRunner."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
import pytest
import trio
from click.testing import CliRunner, Result

import stem
from stem.cli import main
from tests import cli_app

APP = "tests.cli_app:app"


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    runner = CliRunner()
    return runner.invoke(main, list(args), env=env, catch_exceptions=False)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/x.db"


def with_worker(
    url: str,
    body: Callable[[stem.Client], Any],
    *,
    queues: Sequence[str] = ("default", "mail"),
) -> Any:
    """Run ``await body(client)`` with a worker of the test app on ``url``."""

    async def go() -> Any:
        async with stem.Client.from_url(url, app=cli_app.app) as client:
            worker = client.worker(concurrency=2, queues=list(queues), claim_wait=0.1)
            async with worker:
                with trio.fail_after(30):
                    return await body(client)

    return trio.run(go)


def wait_all(task_ids: Sequence[str]) -> Callable[[stem.Client], Any]:
    async def body(client: stem.Client) -> list[stem.TaskResult]:
        return [await client.wait_for(t, timeout=20) for t in task_ids]

    return body


def all_commands() -> list[list[str]]:
    """Every command path of the CLI, e.g. ["dlq", "list"]."""
    paths: list[list[str]] = []

    def walk(cmd: click.Command, path: list[str]) -> None:
        paths.append(path)
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])

    walk(main, [])
    return paths


# -- basics -------------------------------------------------------------------


def test_version() -> None:
    """`stem --version` prints the package version."""
    result = invoke("--version")
    assert result.exit_code == 0
    assert stem.__version__ in result.stdout


@pytest.mark.parametrize("path", all_commands(), ids=lambda p: " ".join(p) or "stem")
def test_every_command_has_help(path: list[str]) -> None:
    """Every command and group answers --help with a usage line and text."""
    result = invoke(*path, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout
    assert len(result.stdout.splitlines()) > 4


def test_expected_commands_are_registered() -> None:
    """The command tree has the commands the issues ask for."""
    names = {" ".join(p) for p in all_commands()}
    for expected in [
        "worker",
        "worker status",
        "tasks ls",
        "enqueue",
        "result",
        "revoke",
        "queues",
        "purge",
        "dlq list",
        "dlq show",
        "dlq retry",
        "dlq replay",
        "dlq purge",
        "health",
        "db migrate",
    ]:
        assert expected in names


def test_worker_help_documents_app() -> None:
    """`stem worker --help` documents --app and STEM_APP."""
    result = invoke("worker", "--help")
    assert result.exit_code == 0
    assert "--app" in result.stdout
    assert "STEM_APP" in result.stdout
    assert "--queue" in result.stdout
    assert "--concurrency" in result.stdout


@pytest.mark.parametrize(
    "spec",
    ["no_such_module_xyz:app", "tests.cli_app:missing", "tests.cli_app:not_an_app"],
)
def test_bad_app_is_one_line_and_exit_2(spec: str) -> None:
    """A bad --app prints one line naming --app/STEM_APP and exits 2."""
    for args in (["tasks", "ls", "--app", spec], ["worker", "--app", spec]):
        result = invoke(*args)
        assert result.exit_code == 2
        assert "Traceback" not in result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1
        assert lines[0].startswith("stem: ")
        assert "STEM_APP" in lines[0]
        assert "--app" in lines[0]


def test_missing_app_from_env_is_one_line() -> None:
    """Without --app or STEM_APP, `stem tasks ls` says what to set."""
    result = invoke("tasks", "ls", env={"STEM_APP": ""})
    assert result.exit_code == 2
    assert "STEM_APP" in result.stderr
    assert "Traceback" not in result.output


def test_app_from_environment() -> None:
    """STEM_APP is read when --app is not given."""
    result = invoke("tasks", "ls", "--json", env={"STEM_APP": APP})
    assert result.exit_code == 0
    assert {t["name"] for t in json.loads(result.stdout)} == {
        "cli.add",
        "cli.boom",
        "cli.mail",
    }


# -- tasks ls -----------------------------------------------------------------


def test_tasks_ls_table() -> None:
    """`stem tasks ls` shows each task with its queue and limits."""
    result = invoke("tasks", "ls", "--app", APP)
    assert result.exit_code == 0, result.output
    for name in ("cli.add", "cli.boom", "cli.mail"):
        assert name in result.stdout
    assert "mail" in result.stdout
    assert "5s" in result.stdout  # the hard time limit


def test_tasks_ls_json() -> None:
    """`stem tasks ls --json` is a list of plain records."""
    result = invoke("tasks", "ls", "--app", APP, "--json")
    records = {r["name"]: r for r in json.loads(result.stdout)}
    mail = records["cli.mail"]
    assert mail["queue"] == "mail"
    assert mail["max_retries"] == 3
    assert mail["rate_limit"] == "10/1s"
    assert mail["hard_time_limit"] == 5.0
    assert mail["soft_time_limit"] is None
    assert records["cli.add"]["queue"] == "default"


# -- enqueue / result ---------------------------------------------------------


def test_enqueue_and_result_round_trip(url: str) -> None:
    """A task enqueued by the CLI runs on a worker; `stem result` shows it."""
    result = invoke("enqueue", "cli.add", "--args", '{"a": 2, "b": 3}', "--url", url)
    assert result.exit_code == 0, result.output
    task_id = result.stdout.strip()
    assert task_id

    queued = invoke("result", task_id, "--url", url, "--json")
    assert queued.exit_code == 0
    assert json.loads(queued.stdout)["state"] == "queued"

    with_worker(url, wait_all([task_id]))

    done = invoke("result", task_id, "--url", url, "--json")
    assert done.exit_code == 0
    record = json.loads(done.stdout)
    assert record["state"] == "succeeded"
    assert record["value"] == 5
    assert record["attempt"] == 1
    assert isinstance(record["updated_at"], float)
    assert record["updated_at_iso"].startswith("20")

    text = invoke("result", task_id, "--url", url, "--wait", "5")
    assert text.exit_code == 0
    assert "succeeded" in text.stdout
    assert "5" in text.stdout


def test_enqueue_uses_the_apps_queue(url: str) -> None:
    """With --app, a task's own queue applies; --queue overrides it."""
    invoke("enqueue", "cli.mail", "--args", '{"to": "a"}', "--app", APP, "--url", url)
    invoke("enqueue", "cli.add", "--queue", "other", "--priority", "5", "--url", url)
    result = invoke("queues", "--url", url, "--json")
    stats = {q["queue"]: q for q in json.loads(result.stdout)}
    assert stats["mail"]["pending"] == 1
    assert stats["other"]["pending"] == 1


def test_enqueue_countdown_and_unique_key(url: str) -> None:
    """--countdown delays the task; --unique-key returns the live task's id."""
    first = invoke("enqueue", "cli.add", "--unique-key", "k1", "--url", url)
    second = invoke("enqueue", "cli.add", "--unique-key", "k1", "--url", url)
    assert first.stdout.strip() == second.stdout.strip()
    invoke("enqueue", "cli.add", "--countdown", "3600", "--url", url)
    stats = json.loads(invoke("queues", "--url", url, "--json").stdout)
    assert stats == [
        {"queue": "default", "pending": 1, "delayed": 1, "in_flight": 0, "dead": 0}
    ]


@pytest.mark.parametrize(
    "args", [["--args", "{nope"], ["--args", "[1, 2]"], ["--priority", "12"]]
)
def test_enqueue_bad_input_is_a_usage_error(url: str, args: list[str]) -> None:
    """Bad --args JSON or an out-of-range priority is refused before writing."""
    result = invoke("enqueue", "cli.add", *args, "--url", url)
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_result_unknown_task_exits_1(url: str) -> None:
    """`stem result` for an unknown id says so and exits 1."""
    result = invoke("result", "nope", "--url", url)
    assert result.exit_code == 1
    assert "no result" in result.stderr


def test_result_wait_times_out(url: str) -> None:
    """`stem result --wait` exits 1 when the task does not finish in time."""
    task_id = invoke("enqueue", "cli.add", "--url", url).stdout.strip()
    result = invoke("result", task_id, "--wait", "0.2", "--url", url)
    assert result.exit_code == 1
    assert "did not finish" in result.stderr
    assert "queued" in result.stderr


def test_revoke(url: str) -> None:
    """A task revoked from the CLI is recorded REVOKED and never runs."""
    task_id = invoke("enqueue", "cli.add", "--url", url).stdout.strip()
    result = invoke("revoke", task_id, "--url", url)
    assert result.exit_code == 0
    state = json.loads(invoke("result", task_id, "--url", url, "--json").stdout)
    assert state["state"] == "revoked"


# -- queues / purge -----------------------------------------------------------


def test_queues_table_and_purge(url: str) -> None:
    """`stem queues` lists depths; `stem purge --yes` empties the queue."""
    for _ in range(3):
        invoke("enqueue", "cli.add", "--url", url)
    table = invoke("queues", "--url", url)
    assert table.exit_code == 0
    assert "default" in table.stdout
    assert "3" in table.stdout

    refused = invoke("purge", "default", "--url", url)
    assert refused.exit_code == 1
    assert "--yes" in refused.stderr
    stats = json.loads(invoke("queues", "--url", url, "--json").stdout)
    assert stats[0]["pending"] == 3

    done = invoke("purge", "default", "--yes", "--url", url)
    assert done.exit_code == 0
    assert "purged 3" in done.stdout
    stats = json.loads(invoke("queues", "--url", url, "--json").stdout)
    assert stats[0]["pending"] == 0


def test_invalid_queue_name_is_a_usage_error(url: str) -> None:
    """A queue name the API would reject is a usage error, not a traceback."""
    result = invoke("dlq", "list", "bad queue!", "--url", url)
    assert result.exit_code == 2
    assert "invalid queue name" in result.output


# -- dead letters -------------------------------------------------------------


def _dead_letters(url: str, count: int) -> list[str]:
    ids = [
        invoke(
            "enqueue", "cli.boom", "--args", json.dumps({"n": i}), "--url", url
        ).stdout.strip()
        for i in range(count)
    ]
    results = with_worker(url, wait_all(ids))
    assert all(r.state is stem.TaskState.FAILED for r in results)
    return ids


def test_dlq_list_and_show(url: str) -> None:
    """Failed tasks are listed by `stem dlq list` and shown by `dlq show`."""
    ids = _dead_letters(url, 3)
    listed = invoke("dlq", "list", "default", "--url", url, "--json")
    assert listed.exit_code == 0
    records = sorted(json.loads(listed.stdout), key=lambda r: ids.index(r["task_id"]))
    # Two slots run the tasks concurrently, so dead-letter order may differ
    # from enqueue order: compare as sets, then inspect task 0's entry.
    assert [r["task_id"] for r in records] == ids
    assert records[0]["reason"] == "max-retries-exhausted"
    assert records[0]["error"]["type"] == "RuntimeError"
    assert records[0]["error"]["message"] == "boom 0"
    assert records[0]["args"] == {"n": 0}
    assert isinstance(records[0]["dead_at"], float)

    page = json.loads(
        invoke(
            "dlq",
            "list",
            "default",
            "--limit",
            "1",
            "--offset",
            "1",
            "--json",
            "--url",
            url,
        ).stdout
    )
    assert [r["task_id"] for r in page] == ids[1:2]

    table = invoke("dlq", "list", "default", "--url", url)
    assert table.exit_code == 0
    assert "max-retries-exhausted" in table.stdout

    shown = invoke("dlq", "show", "default", ids[1], "--url", url)
    assert shown.exit_code == 0
    assert "boom 1" in shown.stdout
    assert "Traceback" in shown.stdout  # the task's traceback, as data
    detail = json.loads(
        invoke("dlq", "show", "default", ids[1], "--url", url, "--json").stdout
    )
    assert detail["envelope"]["name"] == "cli.boom"
    assert detail["error"]["traceback"]

    missing = invoke("dlq", "show", "default", "nope", "--url", url)
    assert missing.exit_code == 1
    assert "no dead letter" in missing.stderr


def test_dlq_retry_runs_the_task_again(url: str) -> None:
    """`stem dlq retry` puts entries back; unknown ids make it exit 1."""
    ids = _dead_letters(url, 2)
    result = invoke("dlq", "retry", "default", ids[0], "--url", url)
    assert result.exit_code == 0, result.output
    assert f"retried {ids[0]}" in result.stdout
    remaining = json.loads(
        invoke("dlq", "list", "default", "--json", "--url", url).stdout
    )
    assert [r["task_id"] for r in remaining] == [ids[1]]
    # The final FAILED record is cleared so the replayed run records its own.
    state = invoke("result", ids[0], "--url", url, "--json")
    assert state.exit_code == 1 or json.loads(state.stdout)["state"] == "queued"
    # It runs (and fails again) as a fresh attempt.
    [again] = with_worker(url, wait_all([ids[0]]))
    assert again.state is stem.TaskState.FAILED
    assert again.attempt == 1

    partial = invoke("dlq", "retry", "default", ids[1], "nope", "--url", url)
    assert partial.exit_code == 1
    assert f"retried {ids[1]}" in partial.stdout
    assert "nope" in partial.stderr


def test_dlq_replay_dry_run_and_since(url: str) -> None:
    """`stem dlq replay --dry-run` changes nothing; --since filters by time."""
    ids = _dead_letters(url, 2)
    dry = invoke("dlq", "replay", "default", "--dry-run", "--json", "--url", url)
    assert dry.exit_code == 0
    assert json.loads(dry.stdout) == {
        "queue": "default",
        "dry_run": True,
        "task_ids": ids,
    }
    future = invoke(
        "dlq", "replay", "default", "--since", "2999-01-01T00:00:00", "--url", url
    )
    assert "replayed 0" in future.stdout
    real = invoke(
        "dlq", "replay", "default", "--limit", "1", "--delay", "0", "--url", url
    )
    assert real.exit_code == 0
    assert f"replayed {ids[0]}" in real.stdout
    left = json.loads(invoke("dlq", "list", "default", "--json", "--url", url).stdout)
    assert [r["task_id"] for r in left] == [ids[1]]

    bad = invoke("dlq", "replay", "default", "--since", "yesterday", "--url", url)
    assert bad.exit_code == 2


def test_dlq_purge_needs_yes(url: str) -> None:
    """`stem dlq purge` refuses without --yes and deletes with it."""
    _dead_letters(url, 2)
    refused = invoke("dlq", "purge", "default", "--url", url)
    assert refused.exit_code == 1
    assert "--yes" in refused.stderr
    assert (
        len(json.loads(invoke("dlq", "list", "default", "--json", "--url", url).stdout))
        == 2
    )

    one = invoke("dlq", "purge", "default", "--limit", "1", "--yes", "--url", url)
    assert "purged 1" in one.stdout
    rest = invoke(
        "dlq", "purge", "default", "--since", "1970-01-01", "--yes", "--url", url
    )
    assert "purged 1" in rest.stdout
    assert (
        json.loads(invoke("dlq", "list", "default", "--json", "--url", url).stdout)
        == []
    )


# -- health and worker status -------------------------------------------------


def test_health_reachable_backend(url: str) -> None:
    """`stem health` exits 0 on a reachable backend and reports each check."""
    result = invoke("health", "--url", url, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["healthy"] is True
    for name in ("backend", "broker", "results", "workers"):
        assert report["checks"][name]["ok"] is True
    assert report["checks"]["workers"]["count"] == 0

    text = invoke("health", "--url", url)
    assert text.exit_code == 0
    assert text.stdout.startswith("healthy")


def test_health_require_workers_without_workers(url: str) -> None:
    """--require-workers makes health fail when no worker is alive."""
    result = invoke("health", "--url", url, "--require-workers", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["healthy"] is False
    assert report["checks"]["workers"]["ok"] is False


@pytest.mark.parametrize(
    "bad_url",
    ["sqlite:////nonexistent-dir-for-stem-tests/x.db", "redis://:secret@127.0.0.1:1/0"],
)
def test_health_unreachable_backend(bad_url: str) -> None:
    """`stem health` exits 1 on an unreachable backend and hides passwords."""
    result = invoke("health", "--url", bad_url, "--json", "--timeout", "10")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["healthy"] is False
    assert report["checks"]["backend"]["ok"] is False
    assert "secret" not in result.output


def test_health_and_status_see_a_live_worker(url: str) -> None:
    """With a worker running, health --require-workers passes and
    `stem worker status` lists it with queue depths."""
    invoke("enqueue", "cli.add", "--queue", "idle", "--url", url)

    async def body(client: stem.Client) -> tuple[Result, Result]:
        with trio.fail_after(10):
            while not await client.workers():
                await trio.sleep(0.05)
        health = await trio.to_thread.run_sync(
            invoke, "health", "--url", url, "--require-workers", "--json"
        )
        status = await trio.to_thread.run_sync(
            invoke, "worker", "status", "--url", url, "--json"
        )
        return health, status

    health, status = with_worker(url, body)
    assert health.exit_code == 0, health.output
    assert json.loads(health.stdout)["checks"]["workers"]["count"] == 1
    assert status.exit_code == 0
    report = json.loads(status.stdout)
    [worker] = report["workers"]
    assert set(worker["queues"]) == {"default", "mail"}
    assert worker["concurrency"] == 2
    assert isinstance(worker["last_seen"], float)
    assert {q["queue"]: q["pending"] for q in report["queues"]}["idle"] == 1


def test_worker_status_text_without_workers(url: str) -> None:
    """`stem worker status` says when no worker is alive."""
    result = invoke("worker", "status", "--url", url)
    assert result.exit_code == 0
    assert "No live workers" in result.stdout


# -- db -----------------------------------------------------------------------


def test_db_migrate_refuses_other_backends(url: str) -> None:
    """`stem db migrate` names the PostgreSQL requirement for other URLs."""
    result = invoke("db", "migrate", "--url", url)
    assert result.exit_code == 2
    assert "postgresql://" in result.stderr
    assert "Traceback" not in result.output


def test_urls_are_redacted_in_errors() -> None:
    """A password in --url never reaches the output."""
    result = invoke("db", "migrate", "--url", "mysql://u:hunter2@h/db")
    assert "hunter2" not in result.output
    assert "***" in result.stderr


@pytest.mark.slow
def test_worker_command_runs_tasks_and_stops_on_sigterm(url: str) -> None:
    """`stem worker` runs enqueued tasks and exits 0 on SIGTERM."""
    import signal
    import subprocess
    import sys
    import time

    task_id = invoke("enqueue", "cli.add", "--args", '{"a": 4, "b": 5}', "--url", url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "stem.cli", "worker", "--app", APP, "--url", url]
        + ["-Q", "default,mail", "--concurrency", "2", "--grace-period", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Generous bounds: a subprocess on a loaded 2-core CI machine.
        done = invoke("result", task_id.stdout.strip(), "--wait", "60", "--url", url)
        assert done.exit_code == 0, done.output
        assert "succeeded" in done.stdout
    finally:
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "ready on" in err
    assert "SIGTERM" in err
