"""``stem events``: the lifecycle events of every process, from the
backend's event log."""

from __future__ import annotations

import json
from collections import deque
from typing import Any

import click
import trio

from stem._errors import DecodeError
from stem._eventcodec import decode_event, event_to_dict
from stem._signals import SIGNALS, Event

from ._common import echo, fail, iso, json_option, open_client, run, url_option

#: Fields shown on a text line, when set, after the time and the signal.
_SHOWN = (
    "task_id",
    "name",
    "queue",
    "attempt",
    "worker_id",
    "run_id",
    "workflow",
    "step",
    "entry",
    "reason",
    "retry_in",
    "runtime",
)


def _line(event: Event, as_json: bool) -> str:
    data = event_to_dict(event)
    if as_json:
        return json.dumps(data, sort_keys=False)
    parts = [str(iso(event.at)), event.signal]
    for key in _SHOWN:
        value = data.get(key)
        if value not in (None, "", 0) or (key == "attempt" and value):
            parts.append(f"{key}={value}")
    error = data.get("error")
    if isinstance(error, dict) and error.get("type"):
        parts.append(f"error={error['type']}: {error.get('message', '')}")
    if event.origin:
        parts.append(f"origin={event.origin}")
    return " ".join(parts)


@click.command()
@click.option(
    "--follow", "-f", is_flag=True, help="Keep printing new events until stopped."
)
@click.option(
    "--signal",
    "signals",
    multiple=True,
    type=click.Choice(sorted(SIGNALS)),
    metavar="SIGNAL",
    help="Only this signal (repeatable), e.g. task_failed.",
)
@click.option(
    "--limit",
    type=click.IntRange(1, 100_000),
    default=50,
    show_default=True,
    help="Without --follow: how many of the newest kept events to print.",
)
@click.option(
    "--count",
    type=click.IntRange(1),
    default=None,
    help="With --follow: stop after this many events.",
)
@url_option
@json_option
def events(
    follow: bool,
    signals: tuple[str, ...],
    limit: int,
    count: int | None,
    url: str,
    as_json: bool,
) -> None:
    """Print lifecycle events (task received, started, succeeded, failed,
    retried, dead-lettered, revoked; workers online, heartbeat, offline;
    schedules fired; workflow state changes) from every process.

    Workers, beat and workflow engines relay their events to the backend
    while someone listens (this command, the dashboard, client.events()),
    so --follow shows events from the moment it starts; without it, the
    newest events the backend still keeps are printed. --json prints one
    JSON object per line.

    \b
    Examples:
      stem events --follow
      stem events --follow --json --signal task_failed
      stem events --limit 20 --url redis://localhost:6379/0
    """
    wanted = set(signals) or set(SIGNALS)

    async def go() -> None:
        async with open_client(url) as client:
            store = client.event_log()
            if store is None:
                fail(
                    f"the backend {client.backend.url} keeps no shared event log "
                    "(the in-memory backend lives in one process)"
                )
            if not follow:
                for event in await _newest(store, wanted, limit):
                    echo(_line(event, as_json))
                return
            seen = 0
            async with client.events(*sorted(wanted)) as stream:
                async for event in stream:
                    echo(_line(event, as_json))
                    seen += 1
                    if count is not None and seen >= count:
                        return

    run(go)


async def _newest(store: Any, wanted: set[str], limit: int) -> list[Event]:
    """The newest ``limit`` decodable events of ``wanted`` kept in the log
    (one pass over it, in pages)."""
    kept: deque[Event] = deque(maxlen=limit)
    after = 0
    while page := await store.read(after, limit=1000):
        after = page[-1].cursor
        for record in page:
            try:
                event = decode_event(record.body)
            except DecodeError:
                continue
            if event.signal in wanted:
                kept.append(event)
        await trio.lowlevel.checkpoint()
    return list(kept)
