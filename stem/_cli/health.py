"""``stem health``: is the backend reachable, are workers alive?"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click
import trio

from .._client import Client
from .._errors import ConfigError
from .._redact import redact, scrub
from ._common import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    echo,
    echo_json,
    fail,
    leaf,
    url_option,
)
from .worker import worker_record

_PROBE_ID = "stem-health-probe"


def _abandoned(meta: Any) -> int:
    """Abandoned threads a heartbeat reports (0 if absent or malformed)."""
    count = meta.get("abandoned_threads") if isinstance(meta, Mapping) else None
    if isinstance(count, bool) or not isinstance(count, int):
        return 0
    return max(count, 0)


def _failed(exc: BaseException) -> dict[str, Any]:
    leaf = exc
    while isinstance(leaf, BaseExceptionGroup) and leaf.exceptions:
        leaf = leaf.exceptions[0]
    return {"ok": False, "error": f"{type(leaf).__name__}: {leaf}"}


async def _timed(fn: Any) -> dict[str, Any]:
    start = trio.current_time()
    try:
        detail = await fn()
    except Exception as exc:
        return _failed(exc)
    elapsed = (trio.current_time() - start) * 1000
    return {"ok": True, "latency_ms": round(elapsed, 2), **detail}


async def check(url: str, *, timeout: float, require_workers: bool) -> dict[str, Any]:
    """Open the backend and run each check; never raises for a failed check."""

    checks: dict[str, Any] = {}
    not_run = {"ok": False, "error": "not run: the backend could not be opened"}
    with trio.move_on_after(timeout) as scope:
        try:
            async with Client.from_url(url) as client:
                checks["backend"] = {"ok": True}

                async def broker() -> dict[str, Any]:
                    stats = await client.queue_stats("default")
                    return {"queues": len(await client.backend.broker.queues())} | {
                        "default_pending": stats.pending
                    }

                async def results() -> dict[str, Any]:
                    await client.backend.results.get(_PROBE_ID)
                    return {}

                async def workers() -> dict[str, Any]:
                    infos = await client.workers()
                    return {
                        "count": len(infos),
                        "abandoned_threads": sum(_abandoned(w.meta) for w in infos),
                        "workers": [worker_record(w) for w in infos],
                    }

                checks["broker"] = await _timed(broker)
                checks["results"] = await _timed(results)
                checks["workers"] = await _timed(workers)
        except Exception as exc:
            misconfigured = leaf(exc, ConfigError)
            if misconfigured is not None:
                # Not a health result: the probe itself is misconfigured.
                raise misconfigured from None
            checks.setdefault("backend", _failed(exc))
    if scope.cancelled_caught:
        timed_out = {"ok": False, "error": f"timed out after {timeout:g} s"}
        for name in ("backend", "broker", "results", "workers"):
            checks.setdefault(name, dict(timed_out))
    for name in ("broker", "results", "workers"):
        checks.setdefault(name, dict(not_run))
    workers_check = checks["workers"]
    live = int(workers_check.get("count", 0))
    workers_check["required"] = require_workers
    if require_workers and workers_check["ok"] and live < 1:
        workers_check["ok"] = False
        workers_check["error"] = "no live worker heartbeat"
    for result in checks.values():
        if isinstance(result.get("error"), str):
            result["error"] = scrub(result["error"], url)
    healthy = all(checks[n]["ok"] for n in ("backend", "broker", "results")) and (
        workers_check["ok"] or not require_workers
    )
    return {"healthy": healthy, "url": redact(url), "checks": checks}


@click.command()
@url_option
@click.option(
    "--require-workers",
    is_flag=True,
    help="Also require at least one live worker heartbeat.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="Give up (unhealthy) after this long.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
def health(url: str, require_workers: bool, timeout: float, as_json: bool) -> None:
    """Check the backend: broker, result backend and worker heartbeats.

    Exits 0 when healthy (the backend answers; with --require-workers also at
    least one live worker), 1 otherwise, 2 for a configuration error (a
    malformed URL, a database or role the server does not have: one line
    on stderr). Suits container health probes.

    \b
    Examples:
      stem health
      stem health --url redis://localhost:6379/0 --require-workers --json
    """

    async def go() -> dict[str, Any]:
        return await check(url, timeout=timeout, require_workers=require_workers)

    try:
        report = trio.run(go)
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)
    if as_json:
        echo_json(report)
    else:
        status = "healthy" if report["healthy"] else "UNHEALTHY"
        echo(f"{status}: {report['url']}")
        for name, result in report["checks"].items():
            if result["ok"]:
                extra = ""
                if name == "workers":
                    extra = f" ({result.get('count', 0)} live"
                    abandoned = result.get("abandoned_threads", 0)
                    if abandoned:
                        extra += f", {abandoned} abandoned thread(s) still running"
                    extra += ")"
                elif "latency_ms" in result:
                    extra = f" ({result['latency_ms']} ms)"
                echo(f"  {name:8} ok{extra}")
            else:
                echo(f"  {name:8} FAILED: {result['error']}")
    if not report["healthy"]:
        raise SystemExit(EXIT_FAILURE)
