"""The rules of a schedule entry's update, shared by every ScheduleStore.

Pure functions on :class:`~stem.contracts.ScheduleRecord`: no I/O. Each
backend reads the record and writes the change with its own atomicity
(a transaction, a Lua script, or no ``await`` in the middle).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .contracts import (
    ScheduleConflict,
    ScheduleExists,
    ScheduleNotFound,
    ScheduleRecord,
)

#: The columns of a schedule record in the SQL stores, in field order.
COLUMNS = (
    "name, definition, enabled, version, created_at, changed_at, "
    "last_fire, last_fired_at, fire_count, fired_by"
)


def exists(name: str) -> ScheduleExists:
    """The error for adding an entry under a name that is taken."""
    return ScheduleExists(f"a schedule entry named {name!r} is stored")


def not_found(name: str) -> ScheduleNotFound:
    """The error for changing an entry that is not stored."""
    return ScheduleNotFound(f"no schedule entry named {name!r}")


def conflict(name: str, version: int, expected: int | None) -> ScheduleConflict:
    """The error for an update that expected another version."""
    return ScheduleConflict(
        f"schedule entry {name!r} is at version {version}, not {expected}"
    )


def check_version(record: ScheduleRecord, expected_version: int | None) -> None:
    """Raise ScheduleConflict unless ``record`` is at ``expected_version``
    (None: any version)."""
    if expected_version is not None and record.version != expected_version:
        raise conflict(record.name, record.version, expected_version)


def merged(
    record: ScheduleRecord,
    *,
    definition: Mapping[str, Any] | None,
    enabled: bool | None,
) -> tuple[Mapping[str, Any], bool] | None:
    """The (definition, enabled) an update stores (None for a field: keep
    it), or None where nothing would change (the version stays)."""
    body = record.definition if definition is None else definition
    flag = record.enabled if enabled is None else enabled
    if body == record.definition and flag == record.enabled:
        return None
    return body, flag
