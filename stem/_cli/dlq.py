"""``stem dlq``: list, show, retry, replay and purge dead letters."""

from __future__ import annotations

import json
from typing import Any

import click

from .._clock import now
from .._options import check_queue_name
from ._common import (
    EXIT_CONFIG,
    QUEUE,
    age,
    echo,
    echo_json,
    fail,
    iso,
    json_option,
    open_client,
    parse_when,
    plain,
    print_table,
    require_yes,
    run,
    url_option,
    yes_option,
)

_since_help = (
    "Only entries dead at or after this time: ISO 8601 "
    "(UTC when no offset is given) or epoch seconds."
)


@click.group()
def dlq() -> None:
    """The dead-letter queue: tasks that will not run again unless you say so.

    A task lands here after its last attempt fails, or when its message
    cannot be decoded, names an unregistered task or passes a time limit.
    """


@dlq.command("list")
@click.argument("queue", type=QUEUE, default="default")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True)
@url_option
@json_option
def dlq_list(queue: str, limit: int, offset: int, url: str, as_json: bool) -> None:
    """List the dead letters of QUEUE (default: "default"), oldest first.

    \b
    Examples:
      stem dlq list
      stem dlq list mail --limit 20 --offset 40 --json
    """

    async def go() -> tuple[list[Any], float]:
        async with open_client(url) as client:
            entries = await client.dead_letters(queue).list(limit=limit, offset=offset)
            return entries, now()

    entries, at = run(go)
    records = [dead_letter_record(e) for e in entries]
    if as_json:
        echo_json(records)
        return
    if not records:
        echo(f"No dead letters in {queue}.")
        return
    print_table(
        f"Dead letters of {queue}",
        ["entry", "task id", "name", "reason", "attempts", "dead", "error"],
        [
            [
                r["entry_id"],
                r["task_id"] or "-",
                r["name"],
                r["reason"],
                r["attempts"],
                age(r["dead_at"], at),
                _error_line(r["error"]),
            ]
            for r in records
        ],
    )


def _error_line(error: dict[str, Any] | None) -> str:
    if not error:
        return "-"
    line = f"{error['type']}: {error['message']}"
    return line if len(line) <= 80 else line[:77] + "..."


@dlq.command("show")
@click.argument("args", nargs=-1, required=True, metavar="[QUEUE] TASK_ID")
@url_option
@json_option
def dlq_show(args: tuple[str, ...], url: str, as_json: bool) -> None:
    """Show one dead letter in full: arguments, error, traceback, attempt
    history. TASK_ID is a task id (its newest entry is shown) or an entry id
    from `stem dlq list` (for entries without a task id); it is looked for in
    every queue's dead letters, or in QUEUE's only. Exits 1 if there is no
    such entry.

    \b
    Examples:
      stem dlq show 0190f1c2-...
      stem dlq show mail 0190f1c2-... --json
    """
    if len(args) > 2:
        fail("expected [QUEUE] TASK_ID", EXIT_CONFIG)
    queue = _queue_name(args[0]) if len(args) == 2 else None
    task_id = args[-1]

    async def go() -> Any:
        async with open_client(url) as client:
            names = [queue] if queue else sorted(await client.queues())
            for name in names:
                dead = client.dead_letters(name)
                found = await dead.get(task_id)
                if found is None:
                    found = await dead.get_entry(task_id)
                if found is not None:
                    return found
            return None

    entry = run(go)
    if entry is None:
        where = f"queue {queue}" if queue else "any queue"
        fail(f"no dead letter {task_id} in {where}")
    record = dead_letter_record(entry, full=True)
    if as_json:
        echo_json(record)
        return
    echo(f"entry:    {record['entry_id']}")
    echo(f"task:     {record['task_id']}")
    echo(f"name:     {record['name']}")
    echo(f"queue:    {record['queue']}")
    echo(f"reason:   {record['reason']}")
    echo(f"attempts: {record['attempts']}")
    echo(f"dead at:  {record['dead_at_iso']}")
    if record["args"] is not None:
        echo(f"args:     {json.dumps(record['args'], default=str)}")
    if record["raw"] is not None:
        echo(f"raw:      {record['raw']}")
    for i, item in enumerate(record["history"], start=1):
        echo(f"attempt {i}: {item.get('type', '?')}: {item.get('message', '')}")
    error = record["error"]
    if error:
        echo(f"error:    {error['type']}: {error['message']}")
        if error.get("traceback"):
            echo(error["traceback"].rstrip(), multiline=True)


def dead_letter_record(entry: Any, *, full: bool = False) -> dict[str, Any]:
    """A DeadLetter as a JSON-ready dict (``full`` adds envelope and history)."""
    env = entry.envelope
    record: dict[str, Any] = {
        "entry_id": entry.entry_id,
        "task_id": entry.task_id,
        "name": entry.name,
        "queue": entry.queue,
        "reason": entry.reason,
        "attempts": entry.attempts,
        "dead_at": entry.dead_at,
        "dead_at_iso": iso(entry.dead_at),
        "error": None if entry.error is None else entry.error.to_dict(),
        "args": None if env is None else plain(env.args),
    }
    if full:
        record["history"] = [plain(h) for h in entry.history]
        record["envelope"] = None if env is None else plain(env)
        record["raw"] = None if entry.raw is None else plain(entry.raw)
    return record


@dlq.command("retry")
@click.argument("task_ids", nargs=-1, required=True, metavar="TASK_ID...")
@click.option(
    "--queue",
    "-q",
    type=QUEUE,
    help="Only look in this queue's dead letters [default: every queue].",
)
@url_option
def dlq_retry(task_ids: tuple[str, ...], queue: str | None, url: str) -> None:
    """Put the dead letters TASK_ID... back on their queues.

    Each is found in whichever queue's dead letters hold it (or in --queue)
    and runs again as a fresh task (attempt 1, same id; its result reads
    "queued" until the new run records its own). Exits 1 if any id was not
    found (the others are still retried). The older form `stem dlq retry
    QUEUE TASK_ID...` still works.

    \b
    Examples:
      stem dlq retry 0190f1c2-... 0190f1c3-...
      stem dlq retry 0190f1c2-... --queue mail
    """

    async def go() -> tuple[list[tuple[str, str]], list[str]]:
        async with open_client(url) as client:
            ids, only = list(task_ids), queue
            if only is None and len(ids) > 1 and await _names_a_queue(client, ids[0]):
                only, ids = ids[0], ids[1:]  # the older QUEUE TASK_ID... form
            done: list[tuple[str, str]] = []
            for task_id in dict.fromkeys(ids):
                names = [only] if only else await _holding(client, task_id)
                for name in names:
                    for replayed in await client.dead_letters(name).replay([task_id]):
                        done.append((replayed, name))
            return done, ids

    done, ids = run(go)
    for task_id, name in done:
        echo(f"retried {task_id} (queue {name})")
    found = {task_id for task_id, _ in done}
    missing = [t for t in ids if t not in found]
    if missing:
        where = f"queue {queue}" if queue else "any queue"
        fail(f"no dead letter in {where} for: {', '.join(missing)}")


async def _holding(client: Any, task_id: str) -> list[str]:
    """The queues whose dead letters hold ``task_id``."""
    names: list[str] = []
    for name in sorted(await client.queues()):
        if await client.dead_letters(name).get(task_id) is not None:
            names.append(name)
    return names


async def _names_a_queue(client: Any, text: str) -> bool:
    """Whether ``text`` names a known queue and is no dead letter's id."""
    try:
        check_queue_name(text)
    except ValueError:
        return False
    return text in await client.queues() and not await _holding(client, text)


def _queue_name(text: str) -> str:
    try:
        return check_queue_name(text)
    except ValueError as exc:
        fail(str(exc), EXIT_CONFIG)


@dlq.command("replay")
@click.argument("queue", type=QUEUE)
@click.option("--limit", type=click.IntRange(min=1), help="At most this many.")
@click.option("--since", metavar="TIME", help=_since_help)
@click.option(
    "--delay",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    metavar="SECONDS",
    help="Make the replayed tasks visible only after this delay.",
)
@click.option("--dry-run", is_flag=True, help="Only print what would be replayed.")
@url_option
@json_option
def dlq_replay(
    queue: str,
    limit: int | None,
    since: str | None,
    delay: float,
    dry_run: bool,
    url: str,
    as_json: bool,
) -> None:
    """Replay dead letters of QUEUE (oldest first) as fresh tasks.

    Undecodable entries are never replayed.

    \b
    Examples:
      stem dlq replay default --dry-run
      stem dlq replay mail --since 2024-05-01T00:00:00Z --limit 100 --delay 5
    """
    since_ts = None if since is None else parse_when(since, option="--since")

    async def go() -> list[str]:
        async with open_client(url) as client:
            ids: list[str] = await client.dead_letters(queue).replay(
                limit=limit, since=since_ts, delay=delay, dry_run=dry_run
            )
            return ids

    ids = run(go)
    if as_json:
        echo_json({"queue": queue, "dry_run": dry_run, "task_ids": ids})
        return
    verb = "would replay" if dry_run else "replayed"
    for task_id in ids:
        echo(f"{verb} {task_id}")
    echo(f"{verb} {len(ids)} dead letter(s) of {queue}")


@dlq.command("purge")
@click.argument("queue", type=QUEUE)
@click.option("--since", metavar="TIME", help=_since_help)
@click.option("--limit", type=click.IntRange(min=1), help="At most this many.")
@yes_option
@url_option
def dlq_purge(
    queue: str, since: str | None, limit: int | None, yes: bool, url: str
) -> None:
    """Delete dead letters of QUEUE (oldest first). Refuses without --yes.

    \b
    Examples:
      stem dlq purge default --yes
      stem dlq purge mail --since 2024-05-01 --limit 1000 --yes
    """
    since_ts = None if since is None else parse_when(since, option="--since")
    require_yes(yes, f"purge the dead letters of {queue!r}")

    async def go() -> int:
        async with open_client(url) as client:
            count: int = await client.dead_letters(queue).purge(
                since=since_ts, limit=limit
            )
            return count

    echo(f"purged {run(go)} dead letter(s) from {queue}")
