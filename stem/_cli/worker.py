"""``stem worker``: run a worker; ``stem worker status``: what is running."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import click
import trio

from .. import _main
from .._clock import now
from .._config import Settings
from .._errors import ConfigError
from .._logging import configure_logging
from .._workerconfig import WorkerConfig, option_specs, parse_option
from ._common import (
    EXIT_CONFIG,
    age,
    app_option,
    echo,
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

F = TypeVar("F", bound=Callable[..., Any])


def worker_config_options(fn: F) -> F:
    """One click option per :class:`WorkerConfig` field that has a flag,
    generated from the field (its flags, help, default and variable), so the
    command line never restates an option. Values are parsed by the field's
    own parser when the command runs; a given option beats its variable."""
    defaults = WorkerConfig(worker_id="-")
    for field, spec in reversed(list(option_specs().items())):
        default = getattr(defaults, field)
        if isinstance(default, tuple):
            default = ",".join(str(v) for v in default)
        env = f"  [env var: {spec.env}]" if spec.env else ""
        shown = "" if default is None else f"  [default: {default}]"
        fn = click.option(
            *spec.flags,
            field,
            multiple=field == "queues",
            default=None,
            metavar=spec.metavar,
            help=spec.help + shown + env,
        )(fn)
    return fn


def _config_from(given: dict[str, Any]) -> WorkerConfig:
    """The worker options: the environment's, then those given here."""
    overrides: dict[str, Any] = {}
    for field, spec in option_specs().items():
        value = given.get(field)
        if value is None or value == ():
            continue
        text = ",".join(value) if isinstance(value, tuple) else str(value)
        flag = "/".join(f for f in spec.flags if f.startswith("-"))
        overrides[field] = parse_option(field, text, source=flag)
    return WorkerConfig.from_env(**overrides)


@click.group(
    invoke_without_command=True,
    short_help="Run a worker (or: stem worker status).",
)
@app_option(required=True)
@worker_config_options
@url_option
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="info",
    show_default=True,
    help="Logging level of the worker's log lines (on stderr).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"], case_sensitive=False),
    default="text",
    show_default=True,
    envvar="STEM_LOG_FORMAT",
    show_envvar=True,
    help="Log lines as text or one JSON object per line; lines about a task "
    "carry its id, name, attempt and trace id. Passwords in URLs are masked.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(min=0, max=65535),
    default=None,
    envvar="STEM_METRICS_PORT",
    show_envvar=True,
    metavar="PORT",
    help="Serve task metrics for Prometheus at http://HOST:PORT/metrics, HOST "
    "from --metrics-host, 127.0.0.1 by default (needs the otel extra). 0 picks "
    "a free port (logged).",
)
@click.pass_context
def worker(
    ctx: click.Context,
    /,
    app_spec: str | None,
    url: str,
    log_level: str,
    log_format: str,
    metrics_port: int | None,
    **worker_options: Any,
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
      stem worker --app myproject.tasks:app --metrics-port 9464 --log-format json
    """
    if ctx.invoked_subcommand is not None:
        return
    app = get_app(app_spec, required=True)
    try:
        # Options given here win; the rest (STEM_BEAT, ...) comes from the
        # environment, exactly as for trio.run(stem.main).
        settings = attrs.evolve(
            Settings.from_env(),
            app=app_spec,
            broker_url=url,
            worker=_config_from(worker_options),
        )
    except ConfigError as exc:
        fail(str(exc), code=EXIT_CONFIG)
    configure_logging(log_level, json=log_format.lower() == "json")

    async def go() -> None:
        await _main.serve(settings, app, metrics_port=metrics_port)

    run(go)


@worker.command("status")
@url_option
@json_option
@click.option(
    "--watch",
    "-w",
    "interval",
    type=click.FloatRange(min=0.2),
    default=None,
    metavar="SECONDS",
    help="A live view: refresh every SECONDS until Ctrl-C (with --json, one "
    "JSON object per line).",
)
def status(url: str, as_json: bool, interval: float | None) -> None:
    """Show live workers (from their heartbeats), tasks in flight and queue
    depths.

    \b
    Examples:
      stem worker status
      stem worker status --watch 2
      stem worker status --json | jq '.workers[].worker_id'
    """

    async def snapshot(client: Any) -> dict[str, Any]:
        infos = await client.workers()
        stats = [
            await client.queue_stats(q)
            for q in sorted(await client.backend.broker.queues())
        ]
        return {
            "at": now(),
            "workers": [worker_record(w) for w in infos],
            "queues": [queue_record(s) for s in stats],
        }

    if interval is None:

        async def once() -> dict[str, Any]:
            async with open_client(url) as client:
                return await snapshot(client)

        _show_status(run(once), as_json=as_json)
        return

    async def watch() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as stops:
            async with open_client(url) as client, trio.open_nursery() as nursery:

                async def stop_on_signal() -> None:
                    async for _ in stops:
                        nursery.cancel_scope.cancel()

                nursery.start_soon(stop_on_signal)
                while True:
                    snap = await snapshot(client)
                    if not as_json:
                        click.clear()
                    _show_status(snap, as_json=as_json, live=True)
                    await trio.sleep(interval)

    run(watch)


def _show_status(snap: dict[str, Any], *, as_json: bool, live: bool = False) -> None:
    workers, queues, at = snap["workers"], snap["queues"], snap["at"]
    if as_json:
        record = {"workers": workers, "queues": queues}
        if live:
            echo(json.dumps({"at": at, **record}, sort_keys=True))
        else:
            echo_json(record)
        return
    if live:
        echo(f"stem worker status at {iso(at)} (Ctrl-C to stop)")
    if workers:
        print_table(
            "Workers",
            [
                "worker",
                "host",
                "pid",
                "queues",
                "in flight",
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
        echo("No live workers.")
    if queues:
        print_queues(queues)
    else:
        echo("No queues.")


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
