"""The schedule store (beat) on Postgres.

One row per entry plus a one-row revision counter. The compare-and-set of a
fire is one ``UPDATE ... WHERE version = $n AND (last_fire IS NULL OR
last_fire < $tick)``: row locking makes it atomic across processes.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Mapping
from typing import Any

import attrs
import trio

from stem._clock import now
from stem._codec import decode_object, dumps, readable
from stem._errors import DecodeError
from stem._schedstate import COLUMNS, conflict, exists, merged, not_found
from stem.adapters._polling import wait_for_change
from stem.contracts import ScheduleRecord

from ._stores import _Store

#: Seconds between checks for changes made by other processes.
CHANGE_POLL = 1.0


def _record(row: Any) -> ScheduleRecord:
    """A stored row as a record; DecodeError (only) when it is not one."""
    try:
        return ScheduleRecord(
            name=row["name"],
            definition=decode_object(row["definition"]),
            enabled=bool(row["enabled"]),
            version=int(row["version"]),
            created_at=float(row["created_at"]),
            changed_at=float(row["changed_at"]),
            last_fire=row["last_fire"],
            last_fired_at=row["last_fired_at"],
            fire_count=int(row["fire_count"]),
            fired_by=row["fired_by"],
        )
    except (KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"stored schedule entry does not decode: {exc}") from None


def _canonical(definition: Mapping[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = json.loads(dumps(dict(definition), what="schedule entry"))
    return copied


@attrs.define(eq=False)
class PostgresSchedules(_Store):
    """:class:`stem.contracts.ScheduleStore` on Postgres."""

    _changed: trio.Event = attrs.field(factory=trio.Event, init=False)

    def _fire_signal(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def add(
        self, name: str, definition: Mapping[str, Any], *, enabled: bool = True
    ) -> ScheduleRecord:
        body = dumps(_canonical(definition))
        at = now()
        s = self.s

        async def run(conn: Any) -> Any:
            async with conn.transaction():
                row = await conn.fetchrow(
                    f"""INSERT INTO {s}.schedules (name, definition, enabled,
                        version, created_at, changed_at)
                    VALUES ($1, $2, $3, 1, $4, $4)
                    ON CONFLICT (name) DO NOTHING
                    RETURNING {COLUMNS}""",
                    name,
                    body,
                    enabled,
                    at,
                )
                if row is not None:
                    await conn.execute(
                        f"UPDATE {s}.schedule_revision SET value = value + 1"
                    )
                return row

        row = await self.db.run(run)
        if row is None:
            raise exists(name)
        self._fire_signal()
        return _record(row)

    async def update(
        self,
        name: str,
        *,
        definition: Mapping[str, Any] | None = None,
        enabled: bool | None = None,
        expected_version: int | None = None,
    ) -> ScheduleRecord:
        new_definition = None if definition is None else _canonical(definition)
        at = now()
        s = self.s

        async def run(conn: Any) -> tuple[str, Any]:
            async with conn.transaction():
                row = await conn.fetchrow(
                    f"SELECT {COLUMNS} FROM {s}.schedules WHERE name = $1 FOR UPDATE",
                    name,
                )
                if row is None:
                    return "missing", None
                record = _record(row)
                if expected_version is not None and record.version != expected_version:
                    return "conflict", record
                change = merged(record, definition=new_definition, enabled=enabled)
                if change is None:
                    return "same", record
                body, flag = change
                updated = await conn.fetchrow(
                    f"""UPDATE {s}.schedules SET definition = $2, enabled = $3,
                        version = version + 1, changed_at = $4
                    WHERE name = $1 RETURNING {COLUMNS}""",
                    name,
                    dumps(body),
                    flag,
                    at,
                )
                await conn.execute(
                    f"UPDATE {s}.schedule_revision SET value = value + 1"
                )
                return "changed", _record(updated)

        status, record = await self.db.run(run)
        if status == "missing":
            raise not_found(name)
        if status == "conflict":
            raise conflict(name, record.version, expected_version)
        if status == "changed":
            self._fire_signal()
        assert isinstance(record, ScheduleRecord)
        return record

    async def remove(self, name: str) -> bool:
        s = self.s

        async def run(conn: Any) -> bool:
            async with conn.transaction():
                gone = await conn.fetchval(
                    f"DELETE FROM {s}.schedules WHERE name = $1 RETURNING 1", name
                )
                if gone is None:
                    return False
                await conn.execute(
                    f"UPDATE {s}.schedule_revision SET value = value + 1"
                )
                return True

        removed = await self.db.run(run)
        if removed:
            self._fire_signal()
        return removed

    async def get(self, name: str) -> ScheduleRecord | None:
        rows = await self._rows(
            f"SELECT {COLUMNS} FROM {self.s}.schedules WHERE name = $1", name
        )
        return _record(rows[0]) if rows else None

    async def list(self) -> builtins.list[ScheduleRecord]:
        rows = await self._rows(
            f"SELECT {COLUMNS} FROM {self.s}.schedules ORDER BY name"
        )
        # A row that no longer decodes is skipped with a warning: one bad row
        # never hides the others from beat or `stem schedule list`.
        return readable(_record, rows, "schedule entry")

    async def record_fire(
        self,
        name: str,
        *,
        expected_version: int,
        tick: float,
        fired_at: float,
        owner: str,
    ) -> ScheduleRecord | None:
        rows = await self._rows(
            f"""UPDATE {self.s}.schedules SET version = version + 1,
                last_fire = $3, last_fired_at = $4,
                fire_count = fire_count + 1, fired_by = $5
            WHERE name = $1 AND version = $2
              AND (last_fire IS NULL OR last_fire < $3)
            RETURNING {COLUMNS}""",
            name,
            expected_version,
            tick,
            fired_at,
            owner,
        )
        return _record(rows[0]) if rows else None

    async def revision(self) -> int:
        value = await self._val(f"SELECT value FROM {self.s}.schedule_revision")
        return 0 if value is None else int(value)

    async def wait_changed(self, revision: int, *, timeout: float) -> int:
        """Woken at once by a change through this backend; other processes'
        changes are seen within :data:`CHANGE_POLL` seconds (one SELECT)."""
        return await wait_for_change(
            revision,
            timeout=timeout,
            read=self.revision,
            changed=lambda: self._changed,
            poll=CHANGE_POLL,
        )
