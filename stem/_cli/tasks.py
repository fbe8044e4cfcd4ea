"""``stem tasks ls``, ``stem enqueue``, ``stem result``, ``stem revoke``."""

from __future__ import annotations

import json
from typing import Any

import click

from .._errors import EncodeError, WaitTimeout
from ._common import (
    EXIT_CONFIG,
    QUEUE,
    app_option,
    echo,
    echo_json,
    fail,
    get_app,
    iso,
    json_option,
    open_client,
    print_table,
    require_task_id,
    run,
    url_option,
)


@click.group()
def tasks() -> None:
    """Inspect the tasks an app registers."""


@tasks.command("ls")
@app_option(required=True)
@json_option
def tasks_ls(app_spec: str | None, as_json: bool) -> None:
    """List the tasks registered on --app with their options.

    \b
    Examples:
      stem tasks ls --app myproject.tasks:app
      stem tasks ls --app myproject.tasks:app --json
    """
    app = get_app(app_spec, required=True)
    assert app is not None
    records = [
        task_record(name, handler, app.queue_for(name))
        for name, handler in sorted(app.tasks.items())
    ]
    if as_json:
        echo_json(records)
        return
    if not records:
        echo("No tasks registered.")
        return
    print_table(
        f"Tasks of {app_spec}",
        [
            "name",
            "queue",
            "max retries",
            "priority",
            "rate limit",
            "soft limit",
            "hard limit",
        ],
        [
            [
                r["name"],
                r["queue"],
                r["max_retries"],
                r["priority"],
                r["rate_limit"] or "-",
                _secs(r["soft_time_limit"]),
                _secs(r["hard_time_limit"]),
            ]
            for r in records
        ],
    )


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:g}s"


def task_record(name: str, handler: Any, queue: str) -> dict[str, Any]:
    """One task's row; ``queue`` is where a call lands (after routes)."""
    opts = handler.task_options
    rate = opts.rate_limit
    return {
        "name": name,
        "queue": queue,
        "max_retries": opts.max_retries,
        "priority": opts.priority,
        "rate_limit": None if rate is None else f"{rate.limit:g}/{rate.period:g}s",
        "rate_limit_scope": opts.rate_limit_scope,
        "soft_time_limit": opts.soft_time_limit,
        "hard_time_limit": opts.hard_time_limit,
        "visibility_timeout": opts.visibility_timeout,
        "unique": opts.unique,
        "execution": opts.execution,
        "async": bool(handler.is_async),
    }


@click.command()
@click.argument("name")
@click.option(
    "--args",
    "args_json",
    metavar="JSON",
    help='The task\'s arguments as a JSON object, e.g. \'{"to": "a@b.c"}\'.',
)
@click.option(
    "--queue", "-q", type=QUEUE, help="Queue to put it on [default: the task's queue]."
)
@click.option(
    "--priority",
    type=click.IntRange(0, 9),
    help="0 (lowest) to 9 (highest) [default: the task's priority].",
)
@click.option(
    "--countdown",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Run no earlier than this many seconds from now.",
)
@click.option(
    "--unique-key",
    metavar="KEY",
    help="Deduplicate: while a task with this key is live, return its id.",
)
@click.option(
    "--task-id",
    metavar="ID",
    help="Your own id, queued once: if it is already known (queued, running, "
    "or finished within its result TTL) nothing is queued.",
)
@url_option
@app_option()
def enqueue(
    name: str,
    args_json: str | None,
    queue: str | None,
    priority: int | None,
    countdown: float | None,
    unique_key: str | None,
    task_id: str | None,
    url: str,
    app_spec: str | None,
) -> None:
    """Queue a call of task NAME and print its task id.

    With --app the task's own options (queue, priority, retries) apply;
    without it the defaults do (queue "default", no retries).

    \b
    Examples:
      stem enqueue email.send --args '{"to": "a@b.c"}'
      stem enqueue reports.generate --queue reports --countdown 60
      stem enqueue invoices.send --task-id invoice-42 --args '{"n": 42}'
    """
    args: dict[str, Any] | None = None
    if args_json is not None:
        try:
            parsed = json.loads(args_json)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(
                f"not valid JSON: {exc}", param_hint="--args"
            ) from None
        if not isinstance(parsed, dict):
            raise click.BadParameter(
                f"must be a JSON object, got {type(parsed).__name__}",
                param_hint="--args",
            )
        args = parsed
    app = get_app(app_spec)

    async def go() -> str:
        async with open_client(url, app) as client:
            try:
                queued: str = await client.enqueue(
                    name,
                    args,
                    queue=queue,
                    priority=priority,
                    countdown=countdown,
                    unique_key=unique_key,
                    task_id=task_id,
                )
            except (EncodeError, ValueError, TypeError) as exc:
                fail(str(exc), EXIT_CONFIG)
            return queued

    echo(run(go))


@click.command()
@click.argument("task_id")
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Wait up to this long for the task to finish (exit 1 if it does not).",
)
@url_option
@json_option
def result(task_id: str, wait: float | None, url: str, as_json: bool) -> None:
    """Show the state and outcome of task TASK_ID.

    Exits 1 when nothing is known about the task (or --wait passes first).

    \b
    Examples:
      stem result 0190f1c2-...
      stem result 0190f1c2-... --wait 30 --json
    """

    async def go() -> Any:
        async with open_client(url) as client:
            try:
                return await read(client)
            except (ValueError, TypeError, KeyError) as exc:  # incl. DecodeError
                fail(
                    f"the stored result of task {task_id!r} cannot be read: "
                    f"{type(exc).__name__}: {exc}"
                )

    async def read(client: Any) -> Any:
        if wait is not None:
            try:
                return await client.wait_for(task_id, timeout=wait)
            except WaitTimeout:
                current = await client.get(task_id)
                state = "unknown" if current is None else current.state.value
                fail(
                    f"task {task_id} did not finish within {wait:g} s (state: {state})"
                )
        return await client.get(task_id)

    res = run(go)
    if res is None:
        fail(f"no result is known for task {task_id}")
    record = result_record(res)
    if as_json:
        echo_json(record)
        return
    echo(f"task:    {record['task_id']}")
    echo(f"name:    {record['name']}")
    echo(f"state:   {record['state']}")
    echo(f"attempt: {record['attempt']}")
    if record["updated_at"]:
        echo(f"updated: {record['updated_at_iso']}")
    if res.progress is not None:
        echo(f"progress: {res.progress.describe()}")
    if record["state"] == "succeeded":
        echo(f"value:   {json.dumps(record['value'], default=str)}")
    if record["error"]:
        err = record["error"]
        echo(f"error:   {err['type']}: {err['message']}")
        if err.get("traceback"):
            echo(err["traceback"].rstrip(), multiline=True)


def result_record(res: Any) -> dict[str, Any]:
    return {
        "task_id": res.task_id,
        "name": res.name,
        "queue": res.queue,
        "state": res.state.value,
        "value": res.value,
        "error": None if res.error is None else res.error.to_dict(),
        "attempt": res.attempt,
        "updated_at": res.updated_at,
        "updated_at_iso": iso(res.updated_at) if res.updated_at else None,
        "meta": dict(res.meta),
        "progress": None if res.progress is None else res.progress.to_dict(),
    }


@click.command()
@click.argument("task_id")
@click.option(
    "--terminate",
    is_flag=True,
    help="Also cancel the task if it is running now.",
)
@click.option("--reason", default="revoked", show_default=True, help="Recorded reason.")
@url_option
def revoke(task_id: str, terminate: bool, reason: str, url: str) -> None:
    """Revoke task TASK_ID: if queued or delayed it never runs.

    The order persists for a day, so workers started later honour it too.

    \b
    Examples:
      stem revoke 0190f1c2-...
      stem revoke 0190f1c2-... --terminate
    """
    require_task_id(task_id)

    async def go() -> None:
        async with open_client(url) as client:
            await client.revoke(task_id, terminate=terminate, reason=reason)

    run(go)
    echo(f"revoked {task_id}" + (" (terminate)" if terminate else ""))
