"""One event stream for the whole dashboard, fanned out to every page.

The hub opens ``client.events()`` once (one listener on the backend's event
log, so workers relay their events), and hands each event to every open
page stream through a bounded channel: a page that does not keep up loses
events (counted), it never slows the others.
"""

from __future__ import annotations

import html
import logging
from typing import Any

import attrs
import trio

from stem._eventcodec import RELAYED_SIGNALS
from stem._signals import Event

logger = logging.getLogger("stem.dashboard")

#: Events each page stream may hold unsent.
BUFFER = 256


@attrs.define(eq=False)
class EventHub:
    client: Any
    _outlets: set[trio.MemorySendChannel[Event]] = attrs.field(factory=set)
    received: int = 0
    dropped: int = 0

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen until cancelled; an outage of the backend is logged and
        retried (pages keep working, only their live updates pause)."""
        task_status.started()
        pause = 1.0
        while True:
            try:
                await self._listen()
            except Exception as exc:
                logger.warning("dashboard event stream interrupted: %s", exc)
            await trio.sleep(pause)
            pause = min(pause * 2, 30.0)

    async def _listen(self) -> None:
        async with self.client.events(*RELAYED_SIGNALS, buffer=10_000) as events:
            async for event in events:
                self.received += 1
                for outlet in list(self._outlets):
                    try:
                        outlet.send_nowait(event)
                    except trio.WouldBlock:
                        self.dropped += 1
                    except (trio.ClosedResourceError, trio.BrokenResourceError):
                        self._outlets.discard(outlet)

    def subscribe(self) -> trio.MemoryReceiveChannel[Event]:
        """A new page stream's channel (close it when the page goes)."""
        send, receive = trio.open_memory_channel[Event](BUFFER)
        self._outlets.add(send)
        return receive


def feed_line(event: Event, root: str) -> str:
    """One line of the live feed as HTML (every value escaped), on one line
    (an SSE data field)."""
    data = attrs.asdict(event, recurse=False)
    parts = [f"<strong>{html.escape(event.signal)}</strong>"]
    task_id = data.get("task_id")
    if task_id:
        href = f"{root}/tasks/{html.escape(str(task_id))}"
        parts.append(f'<a href="{href}"><code>{html.escape(str(task_id))}</code></a>')
    for key in ("name", "queue", "worker_id", "workflow", "run_id", "entry"):
        value = data.get(key)
        if value:
            parts.append(f"{key}={html.escape(str(value))}")
    error = data.get("error")
    if error is not None:
        parts.append(html.escape(f"{error.type}: {error.message}"))
    text = " ".join(parts).replace("\n", " ").replace("\r", " ")
    return f"<li>{text}</li>"
