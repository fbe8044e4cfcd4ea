"""The dead-letter queue of one queue, as a client sees it."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import attrs

from ._clock import now
from ._durations import Duration, to_epoch, to_seconds
from ._redelivery import replayed_result
from .contracts import DeadLetter

if TYPE_CHECKING:
    from ._client import Client


@attrs.define(eq=False)
class DeadLetters:
    """The dead-letter queue of one queue: ``client.dead_letters("mail")``."""

    _client: Client
    queue: str

    async def list(self, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        """Entries, oldest first."""
        return await self._client.backend.broker.list_dead(
            self.queue, limit=limit, offset=offset
        )

    async def get(self, task_id: str) -> DeadLetter | None:
        """The newest entry of ``task_id`` (a queue keeps every entry, so a
        task id may have several: a task that died twice without a replay
        between, or a poison message that forged the id)."""
        return await self._client.backend.broker.get_dead(self.queue, task_id)

    async def get_entry(self, entry_id: str) -> DeadLetter | None:
        """The entry whose ``entry_id`` this is (reads the queue's entries:
        for the occasional look-up, e.g. an entry without a task id)."""
        offset, page = 0, 500
        while True:
            entries = await self.list(limit=page, offset=offset)
            for entry in entries:
                if entry.entry_id == entry_id:
                    return entry
            if len(entries) < page:
                return None
            offset += page

    async def replay(
        self,
        task_ids: Sequence[str] | str | None = None,
        *,
        limit: int | None = None,
        since: datetime | float | None = None,
        delay: Duration = 0.0,
        dry_run: bool = False,
    ) -> builtins.list[str]:
        """Put entries back on the queue as fresh tasks (attempt 1, same id).

        Returns the ids chosen; ``dry_run`` only reports them. The replayed
        tasks' results are reset to QUEUED so they can succeed this time.
        """
        if isinstance(task_ids, str):
            task_ids = [task_ids]
        since_ts = (
            to_epoch(since, name="since") if isinstance(since, datetime) else since
        )
        broker = self._client.backend.broker
        if not dry_run:
            # The final FAILED record is replaced by a fresh QUEUED one (forget,
            # then write: terminal records are otherwise final), so the replayed
            # run can record its own outcome.
            chosen = await broker.replay_dead(
                self.queue,
                task_ids=task_ids,
                limit=limit,
                since=since_ts,
                delay=0,
                dry_run=True,
            )
            results = self._client.backend.results
            queued = []
            for task_id in chosen:
                entry = await broker.get_dead(self.queue, task_id)
                await results.forget(task_id)
                queued.append(
                    replayed_result(
                        task_id,
                        name=entry.name if entry is not None else "",
                        queue=self.queue,
                        at=now(),
                    )
                )
            if queued:
                await results.set_state(queued)
        return await broker.replay_dead(
            self.queue,
            task_ids=task_ids,
            limit=limit,
            since=since_ts,
            delay=to_seconds(delay, name="delay"),
            dry_run=dry_run,
        )

    async def purge(
        self, *, since: datetime | float | None = None, limit: int | None = None
    ) -> int:
        since_ts = (
            to_epoch(since, name="since") if isinstance(since, datetime) else since
        )
        return await self._client.backend.broker.purge_dead(
            self.queue, since=since_ts, limit=limit
        )

    async def count(self) -> int:
        return (await self._client.backend.broker.stats(self.queue)).dead
