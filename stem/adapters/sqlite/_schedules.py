"""The schedule store (beat): one row per entry, a revision counter.

Every call is one transaction. The compare-and-set of a fire is a single
``UPDATE ... WHERE version = ? AND (last_fire IS NULL OR last_fire < ?)``
under ``BEGIN IMMEDIATE``, so two processes never both record one tick.
"""

from __future__ import annotations

import builtins
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any, cast

import attrs
import trio

from stem import _clock
from stem._codec import decode_object, dumps, loads, readable
from stem._errors import DecodeError
from stem._schedstate import COLUMNS, check_version, exists, merged, not_found
from stem.contracts import ScheduleRecord

from ._db import Database, Signal

#: Seconds between checks for changes made by other processes.
CHANGE_POLL = 1.0


def _record(row: Sequence[Any]) -> ScheduleRecord:
    """A stored row as a record; DecodeError (only) when it is not one."""
    try:
        return ScheduleRecord(
            name=row[0],
            definition=decode_object(row[1]),
            enabled=bool(row[2]),
            version=int(row[3]),
            created_at=float(row[4]),
            changed_at=float(row[5]),
            last_fire=row[6],
            last_fired_at=row[7],
            fire_count=int(row[8]),
            fired_by=row[9],
        )
    except (KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"stored schedule entry does not decode: {exc}") from None


def _select(conn: sqlite3.Connection, name: str) -> ScheduleRecord | None:
    row = conn.execute(
        f"SELECT {COLUMNS} FROM schedules WHERE name = ?", (name,)
    ).fetchone()
    return None if row is None else _record(row)


def _bump(conn: sqlite3.Connection) -> None:
    conn.execute(
        "INSERT INTO counters (name, value) VALUES ('schedules', 1) "
        "ON CONFLICT (name) DO UPDATE SET value = value + 1"
    )


def _revision(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM counters WHERE name = 'schedules'").fetchone()
    return 0 if row is None else int(row[0])


@attrs.define(eq=False)
class SQLiteSchedules:
    """:class:`stem.contracts.ScheduleStore` on the backend's file."""

    db: Database
    _signal: Signal = attrs.field(factory=Signal, init=False)

    async def add(
        self, name: str, definition: Mapping[str, Any], *, enabled: bool = True
    ) -> ScheduleRecord:
        body = dumps(dict(definition), what="schedule entry")
        at = _clock.now()

        def run(conn: sqlite3.Connection) -> ScheduleRecord:
            try:
                conn.execute(
                    "INSERT INTO schedules (name, definition, enabled, version, "
                    "created_at, changed_at) VALUES (?, ?, ?, 1, ?, ?)",
                    (name, body, int(enabled), at, at),
                )
            except sqlite3.IntegrityError:
                raise exists(name) from None
            _bump(conn)
            record = _select(conn, name)
            assert record is not None
            return record

        record = await self.db.write(run)
        self._changed()
        return record

    async def update(
        self,
        name: str,
        *,
        definition: Mapping[str, Any] | None = None,
        enabled: bool | None = None,
        expected_version: int | None = None,
    ) -> ScheduleRecord:
        new_definition = (
            None
            if definition is None
            else loads(dumps(dict(definition), what="schedule entry"))
        )
        at = _clock.now()
        changed = False

        def run(conn: sqlite3.Connection) -> ScheduleRecord:
            nonlocal changed
            record = _select(conn, name)
            if record is None:
                raise not_found(name)
            check_version(record, expected_version)
            change = merged(record, definition=new_definition, enabled=enabled)
            if change is None:
                return record
            body, flag = change
            conn.execute(
                "UPDATE schedules SET definition = ?, enabled = ?, "
                "version = version + 1, changed_at = ? WHERE name = ?",
                (dumps(body), int(flag), at, name),
            )
            _bump(conn)
            changed = True
            updated = _select(conn, name)
            assert updated is not None
            return updated

        record = await self.db.write(run)
        if changed:
            self._changed()
        return record

    async def remove(self, name: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            gone = conn.execute("DELETE FROM schedules WHERE name = ?", (name,))
            if gone.rowcount == 0:
                return False
            _bump(conn)
            return True

        removed = await self.db.write(run)
        if removed:
            self._changed()
        return removed

    async def get(self, name: str) -> ScheduleRecord | None:
        return await self.db.read(lambda conn: _select(conn, name))

    async def list(self) -> builtins.list[ScheduleRecord]:
        rows = await self.db.read(
            lambda conn: conn.execute(
                f"SELECT {COLUMNS} FROM schedules ORDER BY name"
            ).fetchall()
        )
        # A row that no longer decodes is skipped with a warning: one bad row
        # never hides the others from beat or `stem schedule list`.
        return readable(
            lambda row: _record(cast(Sequence[Any], row)), rows, "schedule entry"
        )

    async def record_fire(
        self,
        name: str,
        *,
        expected_version: int,
        tick: float,
        fired_at: float,
        owner: str,
    ) -> ScheduleRecord | None:
        def run(conn: sqlite3.Connection) -> ScheduleRecord | None:
            done = conn.execute(
                "UPDATE schedules SET version = version + 1, last_fire = ?, "
                "last_fired_at = ?, fire_count = fire_count + 1, fired_by = ? "
                "WHERE name = ? AND version = ? "
                "AND (last_fire IS NULL OR last_fire < ?)",
                (tick, fired_at, owner, name, expected_version, tick),
            )
            if done.rowcount == 0:
                return None
            return _select(conn, name)

        return await self.db.write(run)

    def _changed(self) -> None:
        self._signal.fire()
        self.db.notify(b"s")

    def woken(self) -> None:
        """Another process changed the entries."""
        self._signal.fire()

    async def revision(self) -> int:
        return await self.db.read(_revision)

    async def wait_changed(self, revision: int, *, timeout: float) -> int:
        """Woken at once by a change through this backend; other processes'
        changes are seen within :data:`CHANGE_POLL` seconds (one cheap
        ``PRAGMA data_version`` read per poll)."""
        deadline = trio.current_time() + max(timeout, 0.0)
        seen: int | None = None
        current = revision
        while True:
            snapshot = self._signal.snapshot()
            seen, found = await self.db.read_if_changed(seen, _revision)
            if found is not None:
                current = found
            if current != revision:
                return current
            remaining = deadline - trio.current_time()
            if remaining <= 0:
                return current
            await Signal.wait(snapshot, min(remaining, CHANGE_POLL))
            if snapshot.is_set():
                # A change through this connection: data_version only counts
                # other connections' commits, so read the counter itself.
                seen = None
