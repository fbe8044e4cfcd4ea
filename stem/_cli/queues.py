"""``stem queues`` and ``stem purge``."""

from __future__ import annotations

from typing import Any

import click

from ._common import (
    QUEUE,
    echo,
    echo_json,
    json_option,
    open_client,
    require_yes,
    run,
    url_option,
    yes_option,
)
from .worker import print_queues, queue_record


@click.command()
@url_option
@json_option
def queues(url: str, as_json: bool) -> None:
    """Show pending, delayed, in-flight and dead counts for every queue.

    \b
    Examples:
      stem queues
      stem queues --url redis://localhost:6379/0 --json
    """

    async def go() -> list[dict[str, Any]]:
        async with open_client(url) as client:
            names = sorted(await client.backend.broker.queues())
            return [queue_record(await client.queue_stats(q)) for q in names]

    records = run(go)
    if as_json:
        echo_json(records)
    elif records:
        print_queues(records)
    else:
        echo("No queues.")


@click.command()
@click.argument("queue", type=QUEUE)
@yes_option
@url_option
def purge(queue: str, yes: bool, url: str) -> None:
    """Delete every waiting task (pending and delayed) of QUEUE.

    Running tasks and dead letters are kept. Refuses without --yes.

    \b
    Example:
      stem purge mail --yes
    """
    require_yes(yes, f"purge queue {queue!r}")

    async def go() -> int:
        async with open_client(url) as client:
            count: int = await client.purge(queue)
            return count

    echo(f"purged {run(go)} task(s) from {queue}")
