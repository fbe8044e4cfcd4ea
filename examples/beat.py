"""Beat: cron, interval and one-off schedules, safe on every node.

Run it with ``python examples/beat.py``: under Trio's MockClock it simulates
two days in a moment and prints every fire, including a daily 02:30 Paris
entry on the spring-forward night (it fires once, at 03:00 CEST).
Without the mock clock the same code runs in real time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import trio
import trio.testing

import stem
from stem._clock import _ANCHOR

PARIS = ZoneInfo("Europe/Paris")


@stem.task("reports.nightly")
async def nightly(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
    return f"report {args['kind']} at {datetime.fromtimestamp(stem.now(), PARIS)}"


@stem.task("health.ping")
async def ping(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
    return None


START = datetime(2024, 3, 30, 12, 0, tzinfo=PARIS)

app = stem.App(
    tasks=[nightly, ping],
    schedules=[
        stem.ScheduleEntry(
            "nightly-report",
            cron="30 2 * * *",
            timezone="Europe/Paris",
            task=stem.signature("reports.nightly", {"kind": "sales"}),
        ),
        stem.ScheduleEntry(
            "ping",
            every=timedelta(hours=6),
            jitter=60,
            task=stem.signature("health.ping", queue="default"),
        ),
        stem.ScheduleEntry(
            "launch",
            at=START + timedelta(hours=20),
            task=stem.signature("reports.nightly", {"kind": "launch"}),
        ),
    ],
)


def show(event: Any) -> None:
    when = datetime.fromtimestamp(event.fire_time, PARIS).isoformat()
    print(f"{event.entry:>15}  tick {when}  task {event.task_id}")


async def main() -> None:
    _ANCHOR.set((START.timestamp(), trio.current_time()))  # the simulated "now"
    app.signals.schedule_dispatched.connect(show)
    async with stem.Client.in_memory(app=app) as client:
        async with client.worker(), client.beat() as beat:
            await trio.sleep(timedelta(days=2).total_seconds())
            print(await beat.statistics())
        for record in await client.backend.schedules.list():
            last = record.last_fire and datetime.fromtimestamp(record.last_fire, UTC)
            print(f"{record.name}: {record.fire_count} fires, last tick {last}")


if __name__ == "__main__":
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
