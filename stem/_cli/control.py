"""``stem inspect ping|stats|active`` and ``stem control revoke|pause|resume|shutdown``.

Both broadcast one request over the backend and print the answer of every
live worker that replied within ``--timeout`` seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from ._common import (
    QUEUE,
    echo,
    echo_json,
    fail,
    iso,
    json_option,
    open_client,
    print_table,
    require_task_id,
    require_yes,
    run,
    url_option,
    yes_option,
)

F = TypeVar("F", bound=Callable[..., Any])


def _common(fn: F) -> F:
    fn = click.option(
        "--timeout",
        type=click.FloatRange(min=0, min_open=True),
        default=1.0,
        show_default=True,
        help="Seconds to wait for replies.",
    )(fn)
    fn = click.option(
        "--destination",
        "-d",
        "destination",
        multiple=True,
        metavar="WORKER_ID",
        help="Only ask this worker (repeatable); default: every worker.",
    )(fn)
    return json_option(url_option(fn))


def _ask(
    url: str,
    command: str,
    args: dict[str, Any] | None,
    timeout: float,
    destination: Sequence[str],
) -> list[Any]:
    async def go() -> list[Any]:
        async with open_client(url) as client:
            replies: list[Any] = await client.control.broadcast(
                command,
                args,
                timeout=timeout,
                destination=list(destination) or None,
            )
            return replies

    return run(go)


def _records(replies: Sequence[Any]) -> list[dict[str, Any]]:
    return [
        {
            "worker_id": r.worker_id,
            "ok": r.ok,
            "data": dict(r.data),
            "error": r.error,
        }
        for r in replies
    ]


def _finish(replies: Sequence[Any], as_json: bool, table: Callable[[], None]) -> None:
    if as_json:
        echo_json(_records(replies))
    elif replies:
        table()
    if not replies:
        if not as_json:
            echo("No worker replied.")
        raise SystemExit(1)
    if not all(r.ok for r in replies):
        for r in replies:
            if not r.ok:
                echo(f"stem: {r.worker_id}: {r.error}", err=True)
        raise SystemExit(1)


@click.group()
def inspect() -> None:
    """Ask live workers about themselves (over the backend's broadcast).

    Exits 1 when no worker replied within --timeout.
    """


@inspect.command("ping")
@_common
def inspect_ping(
    url: str, as_json: bool, timeout: float, destination: tuple[str, ...]
) -> None:
    """Which workers are alive and answering.

    \b
    Examples:
      stem inspect ping
      stem inspect ping --timeout 3 --json
    """
    replies = _ask(url, "ping", None, timeout, destination)
    _finish(
        replies,
        as_json,
        lambda: print_table(
            "workers",
            ["worker", "answered at"],
            [(r.worker_id, iso(r.data.get("at"))) for r in replies],
        ),
    )


@inspect.command("stats")
@_common
def inspect_stats(
    url: str, as_json: bool, timeout: float, destination: tuple[str, ...]
) -> None:
    """Counters, slots and paused queues of every worker.

    \b
    Example:
      stem inspect stats --json
    """
    replies = _ask(url, "stats", None, timeout, destination)
    columns = ["worker", "queues", "slots", "active", "processed", "succeeded"]
    columns += ["failed", "retried", "rate-limited", "paused", "abandoned"]

    def table() -> None:
        rows = []
        for r in replies:
            d = r.data
            rows.append(
                (
                    r.worker_id,
                    ",".join(d.get("queues", ())),
                    f"{d.get('slots')}/{d.get('concurrency')}",
                    d.get("active"),
                    d.get("processed"),
                    d.get("succeeded"),
                    d.get("failed"),
                    d.get("retried"),
                    d.get("rate_limited"),
                    ",".join(d.get("paused", ())) or "-",
                    d.get("abandoned_threads", 0),
                )
            )
        print_table("worker statistics", columns, rows)

    _finish(replies, as_json, table)


@inspect.command("active")
@_common
def inspect_active(
    url: str, as_json: bool, timeout: float, destination: tuple[str, ...]
) -> None:
    """The tasks each worker is running now, and the threads it abandoned
    at a time limit that still run.

    \b
    Example:
      stem inspect active
    """
    replies = _ask(url, "active", None, timeout, destination)

    def table() -> None:
        rows = [
            (r.worker_id, t["task_id"], t["name"], t["attempt"], iso(t["started_at"]))
            for r in replies
            for t in r.data.get("tasks", ())
        ]
        rows += [
            (
                r.worker_id,
                t["task_id"],
                t["name"],
                t["attempt"],
                f"abandoned at {iso(t['abandoned_at'])}",
            )
            for r in replies
            for t in r.data.get("abandoned", ())
        ]
        print_table(
            "active tasks", ["worker", "task id", "name", "attempt", "started"], rows
        )

    _finish(replies, as_json, table)


@click.group()
def control() -> None:
    """Change live workers: revoke, pause or resume a queue, shut down.

    Exits 1 when no worker replied within --timeout.
    """


@control.command("revoke")
@click.argument("task_id")
@click.option("--terminate", is_flag=True, help="Also cancel it if it is running.")
@_common
def control_revoke(
    task_id: str,
    terminate: bool,
    url: str,
    as_json: bool,
    timeout: float,
    destination: tuple[str, ...],
) -> None:
    """Revoke TASK_ID: stored first (so it never runs, even on a worker
    started later), then told to every live worker (with --terminate a
    running attempt is cancelled at once).

    \b
    Example:
      stem control revoke 0190f1c2-... --terminate
    """
    require_task_id(task_id)

    async def go() -> list[Any]:
        async with open_client(url) as client:
            await client.revoke(task_id, terminate=terminate)
            replies: list[Any] = await client.control.revoke(
                task_id, terminate=terminate, timeout=timeout
            )
            return replies

    replies = run(go)
    if as_json:
        echo_json(_records(replies))
        return
    echo(f"revoked {task_id} (told {len(replies)} live worker(s))")


def _queue_command(command: str) -> Callable[..., None]:
    def body(
        queue: str,
        url: str,
        as_json: bool,
        timeout: float,
        destination: tuple[str, ...],
    ) -> None:
        replies = _ask(url, command, {"queue": queue}, timeout, destination)
        _finish(
            replies,
            as_json,
            lambda: print_table(
                f"{command} {queue}",
                ["worker", "changed"],
                [(r.worker_id, r.data.get("changed")) for r in replies],
            ),
        )

    return body


control.command(
    "pause",
    help="Stop claiming tasks from QUEUE on every (or the named) worker; "
    "running tasks go on.\n\n\b\nExample:\n  stem control pause mail",
)(click.argument("queue", type=QUEUE)(_common(_queue_command("pause"))))
control.command(
    "resume",
    help="Claim tasks from QUEUE again.\n\n\b\nExample:\n  stem control resume mail",
)(click.argument("queue", type=QUEUE)(_common(_queue_command("resume"))))


@control.command("shutdown")
@click.option(
    "--mode",
    type=click.Choice(["warm", "soft", "hard"]),
    default="warm",
    show_default=True,
    help="warm: finish running tasks within the grace period; soft: cancel "
    "them and hand them back; hard: stop now.",
)
@yes_option
@_common
def control_shutdown(
    mode: str,
    yes: bool,
    url: str,
    as_json: bool,
    timeout: float,
    destination: tuple[str, ...],
) -> None:
    """Shut workers down (all, or those named with -d). Needs --yes.

    \b
    Examples:
      stem control shutdown --yes
      stem control shutdown --mode soft -d host:123:abcd --yes
    """
    target = ", ".join(destination) or "every worker"
    require_yes(yes, f"shut down {target}")
    replies = _ask(url, "shutdown", {"mode": mode}, timeout, destination)
    if not replies and not as_json:
        fail("no worker replied")

    def show() -> None:
        for reply in replies:
            echo(f"{reply.worker_id}: {mode} shutdown")

    _finish(replies, as_json, show)
