"""What every ``stem`` command shares: the ``--url``/``--app`` options, running
a coroutine under Trio with one-line errors, and JSON / table output."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

import attrs
import click
import trio
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .._app import App
from .._client import Client
from .._config import Settings, load_app, with_env_signing
from .._errors import BrokerUnavailable, ConfigError, StemError
from .._ids import check_id
from .._options import check_queue_name
from .._redact import redact_text
from .._text import escape_control

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
E = TypeVar("E", bound=BaseException)

#: Exit status for a configuration or usage error (bad --app, bad URL).
EXIT_CONFIG = 2
#: Exit status for an operation that failed (backend unreachable, not found).
EXIT_FAILURE = 1


def echo(message: object = "", *, err: bool = False, multiline: bool = False) -> None:
    """``click.echo`` for text that may come from outside (ids, names, error
    messages, message bodies): control characters are escaped, so stored
    data can neither forge output lines nor send escape sequences to the
    terminal. ``multiline`` keeps newlines (a traceback)."""
    click.echo(escape_control(str(message), keep_newlines=multiline), err=err)


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    """Print ``stem: <message>`` on stderr (one line, control characters
    escaped, passwords in URLs masked) and exit with ``code``."""
    echo(f"stem: {redact_text(message)}", err=True)
    raise SystemExit(code)


def url_option(fn: F) -> F:
    """``--url`` (env STEM_BROKER_URL, default the embedded SQLite file)."""
    return click.option(
        "--url",
        envvar="STEM_BROKER_URL",
        default=Settings().broker_url,
        show_default=True,
        show_envvar=True,
        metavar="URL",
        help="Backend URL: memory://, sqlite:///stem.db, redis://host:6379/0 "
        "or postgresql://user@host/db.",
    )(fn)


def app_option(*, required: bool = False) -> Callable[[F], F]:
    """``--app pkg.module:app`` (env STEM_APP)."""
    need = (
        "Required."
        if required
        else "Optional: gives the tasks' default queues and options."
    )

    def decorate(fn: F) -> F:
        return click.option(
            "--app",
            "app_spec",
            envvar="STEM_APP",
            show_envvar=True,
            metavar="PKG.MODULE:APP",
            help="The stem.App (or list of tasks) to load, as 'pkg.module:app'. "
            + need,
        )(fn)

    return decorate


def json_option(fn: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print machine-readable JSON."
    )(fn)


def yes_option(fn: F) -> F:
    return click.option(
        "--yes",
        "-y",
        is_flag=True,
        help="Confirm a destructive operation (required).",
    )(fn)


def require_yes(yes: bool, what: str) -> None:
    """Refuse a destructive command unless ``--yes`` was given (exit 1)."""
    if not yes:
        fail(f"refusing to {what} without --yes (this cannot be undone)")


def get_app(spec: str | None, *, required: bool = False) -> App | None:
    """Load ``--app``/STEM_APP; a ConfigError is one line on stderr and exit 2."""
    if not spec and not required:
        return None
    try:
        return with_env_signing(load_app(spec, var="--app/STEM_APP"))
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)


def leaf(exc: BaseException, kind: type[E]) -> E | None:
    """The first exception of type ``kind`` in ``exc`` (unwrapping groups)."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = leaf(inner, kind)
            if found is not None:
                return found
    return None


def run(fn: Callable[[], Awaitable[T]]) -> T:
    """``trio.run(fn)``; Stem's errors become one line on stderr.

    ConfigError exits 2, anything else Stem raises on purpose (backend
    unreachable, a timeout) exits 1; :func:`fail` may be called inside ``fn``.
    Other exceptions propagate (bugs).
    """

    async def call() -> T:
        return await fn()

    try:
        return trio.run(call)
    except BaseExceptionGroup as group:
        exit_ = leaf(group, SystemExit)
        if exit_ is not None:
            raise exit_ from None
        _report(group)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except Exception as exc:
        _report(exc)


def require_task_id(task_id: str) -> str:
    """A task id given on the command line; an empty one (or one with
    control characters) is a usage error: one line, exit 2."""
    try:
        return check_id(task_id)
    except ValueError as exc:
        fail(str(exc), EXIT_CONFIG)


def report_unexpected(exc: BaseException) -> NoReturn:
    """An error no command expected (a bug, or data no decoder foresaw):
    one line naming it, exit 1; ``STEM_DEBUG=1`` shows the traceback."""
    if os.environ.get("STEM_DEBUG"):
        raise exc
    inner = exc
    while isinstance(inner, BaseExceptionGroup) and inner.exceptions:
        inner = inner.exceptions[0]
    fail(
        f"unexpected error: {type(inner).__name__}: {inner} "
        "(set STEM_DEBUG=1 to see the traceback)"
    )


def _report(exc: BaseException) -> NoReturn:
    err = leaf(exc, StemError)
    if err is None:
        raise exc
    if isinstance(err, ConfigError):
        fail(str(err), EXIT_CONFIG)
    if isinstance(err, BrokerUnavailable):
        fail(f"backend unreachable: {err}")
    fail(str(err) or type(err).__name__)


@asynccontextmanager
async def open_client(url: str, app: App | None = None) -> AsyncIterator[Any]:
    """``async with stem.Client.from_url(url, app=app) as client``, signing
    with ``STEM_SIGNING_KEYS`` when that is set."""
    try:
        signed = with_env_signing(app)
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)
    async with Client.from_url(url, app=signed) as client:
        yield client


# -- output -------------------------------------------------------------------


def iso(ts: float | None) -> str | None:
    """Epoch seconds as an ISO 8601 UTC string."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat()


def parse_when(text: str, *, option: str) -> float:
    """``--since``: an ISO 8601 time (UTC when it has no offset) or epoch seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"expected an ISO 8601 time such as 2024-05-01T12:00:00+00:00 "
            f"or epoch seconds, got {text!r}",
            param_hint=option,
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def plain(value: Any) -> Any:
    """``value`` as JSON-ready data (attrs records, enums, tuples, bytes)."""
    if attrs.has(type(value)):
        return {
            f.name: plain(getattr(value, f.name)) for f in attrs.fields(type(value))
        }
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(plain(data), indent=2, sort_keys=False))


def print_table(
    title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """A rich table on stdout (plain text when stdout is not a terminal).
    Cells are shown as text, never as rich markup, with control characters
    escaped."""

    table = Table(title=None if title is None else _cell(title), show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(_cell("" if cell is None else cell) for cell in row))
    Console(file=sys.stdout, width=_width()).print(table)


def _cell(value: object) -> Text:
    return Text(escape_control(str(value)))


def _width() -> int | None:
    return None if sys.stdout.isatty() else 160


def age(ts: float, at: float) -> str:
    """``ts`` as a short age relative to ``at`` ("3.2s ago")."""
    seconds = max(0.0, at - ts)
    if seconds < 120:
        return f"{seconds:.1f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m ago"
    return f"{seconds / 3600:.1f}h ago"


class QueueName(click.ParamType):  # type: ignore[type-arg]
    """A queue name, checked like the API checks it."""

    name = "queue"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:

        try:
            return check_queue_name(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


QUEUE = QueueName()
