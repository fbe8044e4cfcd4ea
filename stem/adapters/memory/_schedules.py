"""The in-memory schedule store (beat)."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any

import attrs
import trio

from stem._clock import now
from stem._codec import dumps, loads
from stem._schedstate import check_version, exists, merged, not_found
from stem.contracts import ScheduleRecord


def _copy(definition: Mapping[str, Any]) -> dict[str, Any]:
    """A private JSON copy (the caller's dict may change later)."""
    copied: dict[str, Any] = loads(dumps(dict(definition), what="schedule entry"))
    return copied


class MemorySchedules:
    """:class:`stem.contracts.ScheduleStore` in this process."""

    def __init__(self) -> None:
        self._records: dict[str, ScheduleRecord] = {}
        self._revision = 0
        self._changed = trio.Event()

    def _bump(self) -> None:
        self._revision += 1
        self._changed.set()
        self._changed = trio.Event()

    async def add(
        self, name: str, definition: Mapping[str, Any], *, enabled: bool = True
    ) -> ScheduleRecord:
        await trio.lowlevel.checkpoint()
        if name in self._records:
            raise exists(name)
        at = now()
        record = ScheduleRecord(
            name=name,
            definition=_copy(definition),
            enabled=enabled,
            version=1,
            created_at=at,
            changed_at=at,
        )
        self._records[name] = record
        self._bump()
        return record

    async def update(
        self,
        name: str,
        *,
        definition: Mapping[str, Any] | None = None,
        enabled: bool | None = None,
        expected_version: int | None = None,
    ) -> ScheduleRecord:
        await trio.lowlevel.checkpoint()
        record = self._records.get(name)
        if record is None:
            raise not_found(name)
        check_version(record, expected_version)
        change = merged(
            record,
            definition=None if definition is None else _copy(definition),
            enabled=enabled,
        )
        if change is None:
            return record
        record = attrs.evolve(
            record,
            definition=change[0],
            enabled=change[1],
            version=record.version + 1,
            changed_at=now(),
        )
        self._records[name] = record
        self._bump()
        return record

    async def remove(self, name: str) -> bool:
        await trio.lowlevel.checkpoint()
        if self._records.pop(name, None) is None:
            return False
        self._bump()
        return True

    async def get(self, name: str) -> ScheduleRecord | None:
        await trio.lowlevel.checkpoint()
        return self._records.get(name)

    async def list(self) -> builtins.list[ScheduleRecord]:
        await trio.lowlevel.checkpoint()
        return [self._records[name] for name in sorted(self._records)]

    async def record_fire(
        self,
        name: str,
        *,
        expected_version: int,
        tick: float,
        fired_at: float,
        owner: str,
    ) -> ScheduleRecord | None:
        await trio.lowlevel.checkpoint()
        record = self._records.get(name)
        if record is None or record.version != expected_version:
            return None
        if record.last_fire is not None and tick <= record.last_fire:
            return None
        record = attrs.evolve(
            record,
            version=record.version + 1,
            last_fire=tick,
            last_fired_at=fired_at,
            fire_count=record.fire_count + 1,
            fired_by=owner,
        )
        self._records[name] = record
        return record

    async def revision(self) -> int:
        await trio.lowlevel.checkpoint()
        return self._revision

    async def wait_changed(self, revision: int, *, timeout: float) -> int:
        if self._revision == revision:
            with trio.move_on_after(max(timeout, 0.0)):
                await self._changed.wait()
        else:
            await trio.lowlevel.checkpoint()
        return self._revision
