"""Poison without a task id is still one dead-letter entry each, listed by
`stem dlq list` with its entry id and shown by `stem dlq show` through it."""

from __future__ import annotations

import json
from pathlib import Path

import trio
from click.testing import CliRunner

import stem
from stem.cli import main


def _dlq(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["dlq", *args], catch_exceptions=False)
    return result.exit_code, result.stdout


def test_entries_without_task_id_are_listed_and_shown_by_entry_id(
    tmp_path: Path,
) -> None:
    """Two undecodable messages leave two entries; the table shows their
    entry ids, and `dlq show` finds one by its entry id with its raw body."""
    url = f"sqlite:///{tmp_path}/x.db"

    async def go() -> None:
        async with stem.Client.from_url(url) as client:
            for body in (b"{broken one", b"{broken two"):
                await client.backend.broker.publish_raw("default", body)
            async with client.worker(concurrency=2, claim_wait=0.1):
                with trio.fail_after(20):
                    while await client.dead_letters("default").count() < 2:
                        await trio.sleep(0.05)

    trio.run(go)
    code, out = _dlq("list", "default", "--url", url, "--json")
    assert code == 0
    records = json.loads(out)
    assert [r["task_id"] for r in records] == ["", ""]
    ids = [r["entry_id"] for r in records]
    assert len(set(ids)) == 2
    assert all(ids)
    code, table = _dlq("list", "default", "--url", url)
    assert code == 0
    assert all(entry_id in table for entry_id in ids)
    code, shown = _dlq("show", "default", ids[1], "--url", url, "--json")
    assert code == 0
    detail = json.loads(shown)
    assert detail["entry_id"] == ids[1]
    assert detail["reason"] == "decode-error"
    assert "broken two" in json.dumps(detail["raw"])
