"""``stem db migrate``: create or upgrade a PostgreSQL backend's schema."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import click

from .._errors import ConfigError, StemError
from .._redact import redact
from ._common import EXIT_CONFIG, echo, fail, run

_POSTGRES_SCHEMES = ("postgres", "postgresql")


@click.group()
def db() -> None:
    """Database schema management (PostgreSQL backends)."""


@db.command("migrate")
@click.option(
    "--url",
    envvar="STEM_BROKER_URL",
    show_envvar=True,
    required=True,
    metavar="URL",
    help="The PostgreSQL backend URL, e.g. postgresql://stem@db.internal/stem.",
)
def migrate(url: str) -> None:
    """Create or upgrade the Stem tables in a PostgreSQL database.

    Safe to run again: migrations already applied are skipped. SQLite and
    Redis backends need no migration (SQLite migrates itself on open).

    \b
    Example:
      stem db migrate --url postgresql://stem@localhost/stem
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in _POSTGRES_SCHEMES:
        fail(
            f"stem db migrate works on PostgreSQL URLs (postgresql://...), "
            f"got {redact(url)!r}",
            EXIT_CONFIG,
        )
    try:
        module = importlib.import_module("stem.adapters.postgres")
        fn: Any = module.migrate
    except (ImportError, AttributeError) as exc:
        fail(
            f"the postgres backend cannot be loaded ({exc}); "
            "install trio-stem[postgres]",
            EXIT_CONFIG,
        )
    if inspect.iscoroutinefunction(fn):

        async def go() -> Any:
            return await fn(url)

        outcome = run(go)
    else:
        try:
            outcome = fn(url)
        except ConfigError as exc:
            fail(str(exc), EXIT_CONFIG)
        except StemError as exc:
            fail(str(exc))
    shown = redact(url)
    if isinstance(outcome, list | tuple):
        if outcome:
            applied = ", ".join(str(v) for v in outcome)
            echo(f"{shown}: applied migration(s) {applied}")
        else:
            echo(f"{shown}: schema is up to date")
    else:
        echo(f"{shown}: migrated")
