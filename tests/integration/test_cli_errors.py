"""What a new user typed wrong, through the real `stem` executable: one line
on stderr starting with `stem: `, never a traceback, exit 2 for a usage or
configuration error (1 for a failed operation)."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

import stem
from tests.cli_process import ROOT, one_line_error, run_stem

APP = "tests.e2e_app:app"

#: URLs no backend can open, and a piece of each one's message.
MALFORMED = [
    ("redis://h:notaport/13", "Port could not be cast"),
    ("postgresql://[::1", "Invalid IPv6 URL"),
    ("redis://127.0.0.1:99999/0", "Port out of range"),
    ("postgresql://u:secret@127.0.0.1:99999/x", "Port out of range"),
    ("redis://127.0.0.1:6379/notadb", "invalid redis database 'notadb'"),
    ("bogus://somewhere", "unknown backend scheme 'bogus'"),
]


@pytest.mark.parametrize(("url", "says"), MALFORMED)
def test_a_malformed_url_is_one_line_from_every_command(url: str, says: str) -> None:
    """`stem enqueue`, `stem worker` and `stem health` refuse a malformed backend
    URL with one line (password masked) and exit 2."""
    for args in (
        ["enqueue", "job"],
        ["worker", "--app", APP],
        ["health"],
    ):
        line = one_line_error(run_stem(*args, "--url", url), 2)
        assert says in line
        assert "secret" not in line


def test_stem_main_refuses_a_malformed_url_in_one_line() -> None:
    """`trio.run(stem.main)` with a malformed STEM_BROKER_URL prints one line
    and exits 2."""
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-c", "import trio, stem; trio.run(stem.main)"],
        env={"STEM_APP": APP, "STEM_BROKER_URL": "redis://h:x/0", "PATH": ""},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Port could not be cast" in one_line_error(proc, 2)


def test_postgres_refusals_are_configuration_errors(postgres_server: Any) -> None:
    """A database or role the server does not have is one line, exit 2, from
    `stem enqueue`, `stem worker` and `stem health`."""
    base = postgres_server.url
    cases = [
        (base.rsplit("/", 1)[0] + "/no_such_db", 'database "no_such_db" does not exist'),
        (base.replace("postgres@", "nobody@"), 'role "nobody" does not exist'),
    ]  # fmt: skip
    for url, says in cases:
        for args in (["enqueue", "job"], ["worker", "--app", APP], ["health"]):
            line = one_line_error(run_stem(*args, "--url", url), 2)
            assert "refused the connection" in line
            assert says in line


def test_redis_database_out_of_range_is_a_configuration_error(
    redis_server: Any,
) -> None:
    """A Redis database number the server does not have is one line, exit 2."""
    url = redis_server.url.rsplit("/", 1)[0] + "/99"
    line = one_line_error(run_stem("queues", "--url", url), 2)
    assert "DB index is out of range" in line


def test_bad_task_names_and_empty_ids_are_refused(tmp_path: Path) -> None:
    """`stem enqueue 'bad name!'` and `stem revoke ""` are refused (exit 2) and
    queue nothing."""
    url = f"sqlite:///{tmp_path}/x.db"
    bad = one_line_error(run_stem("enqueue", "bad name!", "--url", url), 2)
    assert "invalid task name 'bad name!'" in bad
    assert "task id" in one_line_error(run_stem("revoke", "", "--url", url), 2)
    queues = run_stem("queues", "--url", url, "--json")
    assert queues.returncode == 0, queues.stderr
    assert queues.stdout.strip() == "[]"


def test_a_corrupt_result_row_is_one_line(tmp_path: Path) -> None:
    """`stem result` of a task whose stored row is not valid JSON says so in one
    line (exit 1)."""
    path = tmp_path / "r.db"
    url = f"sqlite:///{path}"

    async def enqueue() -> str:
        async with stem.Client.from_url(url) as client:
            return await client.enqueue("job")

    task_id = trio.run(enqueue)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE results SET body = '{oops' WHERE task_id = ?", (task_id,))
    line = one_line_error(run_stem("result", task_id, "--url", url), 1)
    assert "cannot be read" in line


#: The real CLI entry point with a bug planted in `stem queues`.
BUGGY_CLI = (
    "import sys, stem._cli.queues as q\n"
    "def bug(stats): raise RuntimeError('a bug in stem queues')\n"
    "q.queue_record = bug\n"
    "from stem.cli import main\n"
    "sys.argv[0] = 'stem'\n"
    "main()\n"
)


def test_an_unexpected_error_is_one_line_unless_stem_debug(tmp_path: Path) -> None:
    """An error no command expects (here a planted bug) is one line naming
    it, exit 1; STEM_DEBUG=1 shows the traceback instead."""
    import subprocess

    url = f"sqlite:///{tmp_path}/s.db"
    trio.run(enqueue_one, url)

    def cli(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", BUGGY_CLI, "queues", "--url", url],
            env={**env, "PATH": ""},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    line = one_line_error(cli({}), 1)
    assert "unexpected error: RuntimeError: a bug in stem queues" in line
    assert "STEM_DEBUG=1" in line
    loud = cli({"STEM_DEBUG": "1"})
    assert loud.returncode == 1
    assert "Traceback" in loud.stderr
    assert "a bug in stem queues" in loud.stderr


async def enqueue_one(url: str) -> None:
    async with stem.Client.from_url(url) as client:
        await client.enqueue("job")
