"""``stem dashboard``: the operations dashboard (``trio-stem[dashboard]``)."""

from __future__ import annotations

import importlib
import ipaddress
from typing import Any

import click
import trio

from .._config import with_env_signing
from .._errors import ConfigError
from ._common import EXIT_CONFIG, echo, fail, run, url_option


def _user(text: str) -> tuple[str, tuple[str, str]]:
    name, sep, rest = text.partition(":")
    password, _, role = rest.partition(":")
    if not sep or not name or not password:
        raise click.BadParameter(
            f"expected NAME:PASSWORD[:admin|read], got {text[:40]!r}",
            param_hint="--user",
        )
    role = role or "admin"
    if role not in ("admin", "read"):
        raise click.BadParameter(
            f"the role must be admin or read, got {role!r}", param_hint="--user"
        )
    return name, (password, role)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command()
@url_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option(
    "--token",
    "tokens",
    multiple=True,
    envvar="STEM_DASHBOARD_TOKEN",
    help="Admin token (repeatable; env STEM_DASHBOARD_TOKEN). One is "
    "generated and printed when no token or user is given.",
)
@click.option(
    "--read-only-token",
    "read_tokens",
    multiple=True,
    envvar="STEM_DASHBOARD_READONLY_TOKEN",
    help="A token that may only look (repeatable; env STEM_DASHBOARD_READONLY_TOKEN).",
)
@click.option(
    "--user",
    "users",
    multiple=True,
    help="HTTP basic-auth user NAME:PASSWORD[:admin|read] (repeatable).",
)
@click.option(
    "--no-auth",
    is_flag=True,
    help="No authentication at all (refused unless --host is a loopback "
    "address): anyone who reaches the port may act.",
)
@click.option("--root-path", default="", help="URL prefix behind a proxy, e.g. /stem.")
def dashboard(
    url: str,
    host: str,
    port: int,
    tokens: tuple[str, ...],
    read_tokens: tuple[str, ...],
    users: tuple[str, ...],
    no_auth: bool,
    root_path: str,
) -> None:
    """Serve the operations dashboard: overview, tasks, dead letters,
    workflows, schedules and workers, updated live.

    Authentication is on by default: give --token (or --user), or copy the
    sign-in link printed at start. Actions (replay, purge, cancel,
    enable/disable, run now, pause/resume/shutdown) need an admin token or
    user; a read-only token only looks. Bind to 127.0.0.1 (the default) and
    put TLS in front (a reverse proxy) when it is reachable from elsewhere.

    \b
    Examples:
      stem dashboard --url redis://localhost:6379/0
      STEM_DASHBOARD_TOKEN=s3cret stem dashboard --host 0.0.0.0 --port 8080
      stem dashboard --user ops:pa55:admin --user viewer:v1ew:read
    """
    try:
        web: Any = importlib.import_module("stem.dashboard")
    except ImportError as exc:
        fail(
            "the dashboard needs its extra: pip install 'trio-stem[dashboard]' "
            f"({exc})",
            EXIT_CONFIG,
        )
    if no_auth and not _loopback(host):
        fail("--no-auth is refused unless --host is a loopback address", EXIT_CONFIG)
    if tokens and any(len(t) < 16 for t in tokens):
        fail("a dashboard token must be at least 16 characters", EXIT_CONFIG)
    named = dict(_user(u) for u in users)
    generated = None
    if no_auth:
        auth = web.DashboardAuth(disabled=True)
    elif tokens or read_tokens or named:
        auth = web.DashboardAuth(
            admin_tokens=tuple(tokens), read_tokens=tuple(read_tokens), users=named
        )
    else:
        auth, generated = web.DashboardAuth.generated()
    root = root_path.rstrip("/")
    try:
        signed = with_env_signing(None)  # STEM_SIGNING_KEYS: sign control actions
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)

    async def go() -> None:
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(
                lambda task_status: web.serve(
                    url,
                    auth,
                    host=host,
                    port=port,
                    root=root,
                    app=signed,
                    task_status=task_status,
                )
            )
            for address in bound:
                link = f"{address}{root}/"
                if generated is not None:
                    link = f"{address}{root}/login?token={generated}"
                echo(f"stem dashboard on {link}")
            if generated is not None:
                echo("(a token was generated for this run: pass --token to keep one)")
            if no_auth:
                echo("WARNING: authentication is off (--no-auth)")

    run(go)
