"""``stem worker``: run a worker; ``stem worker status``: what is running."""

from __future__ import annotations

import logging
from typing import Any

import click

from .._config import Settings, parse_queues
from .._errors import ConfigError
from ._common import (
    EXIT_CONFIG,
    age,
    app_option,
    echo_json,
    fail,
    get_app,
    iso,
    json_option,
    open_client,
    print_table,
    run,
    url_option,
)

_DEFAULTS = Settings()


def _queues(values: tuple[str, ...]) -> tuple[str, ...]:
    if not values:
        return _DEFAULTS.queues
    try:
        return parse_queues(",".join(values), var="--queue")
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)


@click.group(
    invoke_without_command=True,
    short_help="Run a worker (or: stem worker status).",
)
@app_option(required=True)
@click.option(
    "--queue",
    "-Q",
    "queues",
    multiple=True,
    envvar="STEM_QUEUES",
    show_envvar=True,
    metavar="QUEUE[,QUEUE...]",
    help="Queue(s) to consume, in priority order; repeat the option or "
    "separate names with commas.  [default: default]",
)
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(min=1),
    default=_DEFAULTS.concurrency,
    show_default=True,
    envvar="STEM_CONCURRENCY",
    show_envvar=True,
    help="How many tasks run at once.",
)
@click.option(
    "--grace-period",
    type=click.FloatRange(min=0),
    default=_DEFAULTS.grace_period,
    show_default=True,
    envvar="STEM_GRACE_PERIOD",
    show_envvar=True,
    metavar="SECONDS",
    help="On SIGINT/SIGTERM, how long running tasks may take to finish before "
    "they are handed back to their queue.",
)
@url_option
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="info",
    show_default=True,
    help="Logging level of the worker's log lines (on stderr).",
)
@click.pass_context
def worker(
    ctx: click.Context,
    app_spec: str | None,
    queues: tuple[str, ...],
    concurrency: int,
    grace_period: float,
    url: str,
    log_level: str,
) -> None:
    """Run a worker until SIGINT or SIGTERM.

    The worker executes the tasks registered on --app from the given queues.
    On a signal it stops taking work, lets running tasks finish within the
    grace period and hands the rest back to their queues: nothing is lost.

    \b
    Examples:
      stem worker --app myproject.tasks:app
      stem worker --app myproject.tasks:app -Q mail -Q default -c 32
      STEM_APP=myproject.tasks:app stem worker --url sqlite:///stem.db
    """
    if ctx.invoked_subcommand is not None:
        return
    app = get_app(app_spec, required=True)
    settings = Settings(
        app=app_spec,
        broker_url=url,
        queues=_queues(queues),
        concurrency=concurrency,
        grace_period=grace_period,
    )
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from .._main import serve

    async def go() -> None:
        await serve(settings, app)

    run(go)


@worker.command("status")
@url_option
@json_option
def status(url: str, as_json: bool) -> None:
    """Show live workers (from their heartbeats) and queue depths.

    \b
    Examples:
      stem worker status
      stem worker status --json | jq '.workers[].worker_id'
    """
    from .._clock import now

    async def go() -> tuple[list[dict[str, Any]], list[dict[str, Any]], float]:
        async with open_client(url) as client:
            infos = await client.workers()
            stats = [
                await client.queue_stats(q)
                for q in sorted(await client.backend.broker.queues())
            ]
            at = now()
        workers = [worker_record(w) for w in infos]
        queues = [queue_record(s) for s in stats]
        return workers, queues, at

    workers, queues, at = run(go)
    if as_json:
        echo_json({"workers": workers, "queues": queues})
        return
    if workers:
        print_table(
            "Workers",
            [
                "worker",
                "host",
                "pid",
                "queues",
                "active",
                "concurrency",
                "processed",
                "last seen",
            ],
            [
                [
                    w["worker_id"],
                    w["hostname"],
                    w["pid"],
                    ",".join(w["queues"]),
                    w["active"],
                    w["concurrency"],
                    w["processed"],
                    age(w["last_seen"], at),
                ]
                for w in workers
            ],
        )
    else:
        click.echo("No live workers.")
    if queues:
        print_queues(queues)
    else:
        click.echo("No queues.")


def worker_record(info: Any) -> dict[str, Any]:
    """A WorkerInfo as a JSON-ready dict (times as epoch and ISO)."""
    return {
        "worker_id": info.worker_id,
        "hostname": info.hostname,
        "pid": info.pid,
        "queues": list(info.queues),
        "concurrency": info.concurrency,
        "active": info.active,
        "processed": info.processed,
        "started_at": info.started_at,
        "started_at_iso": iso(info.started_at),
        "last_seen": info.last_seen,
        "last_seen_iso": iso(info.last_seen),
        "meta": dict(info.meta),
    }


def queue_record(stats: Any) -> dict[str, Any]:
    return {
        "queue": stats.queue,
        "pending": stats.pending,
        "delayed": stats.delayed,
        "in_flight": stats.in_flight,
        "dead": stats.dead,
    }


def print_queues(queues: list[dict[str, Any]]) -> None:
    print_table(
        "Queues",
        ["queue", "pending", "delayed", "in flight", "dead"],
        [
            [q["queue"], q["pending"], q["delayed"], q["in_flight"], q["dead"]]
            for q in queues
        ],
    )
