"""The schedule store (beat) on Redis.

One hash per entry (``<ns>:{<ns>:sched}:e:<name>``), a set of names and a
revision counter, all under one hash tag so each Lua script touches a single
Redis Cluster slot. Floats are stored as exact ``repr`` text and compared in
Lua with ``tonumber``; definitions are canonical JSON (sorted keys) so an
update that changes nothing is recognised by comparing strings.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Mapping
from typing import Any, cast

import trio

from stem._clock import now
from stem._codec import decode_object, dumps, readable
from stem._errors import DecodeError
from stem._schedstate import conflict, exists, not_found
from stem.adapters._polling import wait_for_change
from stem.contracts import ScheduleRecord

from ._conn import Conn, fmt

#: Seconds between checks for changes made by other processes.
CHANGE_POLL = 1.0

ADD = r"""
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'definition', ARGV[2], 'enabled', ARGV[3],
  'version', '1', 'created_at', ARGV[4], 'changed_at', ARGV[4], 'fire_count', '0')
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('INCR', KEYS[3])
return 1
"""

UPDATE = r"""
local v = redis.call('HGET', KEYS[1], 'version')
if not v then return {-1, 0} end
v = tonumber(v)
if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= v then return {-2, v} end
local def = redis.call('HGET', KEYS[1], 'definition')
local en = redis.call('HGET', KEYS[1], 'enabled')
local newdef = def
local newen = en
if ARGV[2] ~= '' then newdef = ARGV[2] end
if ARGV[3] ~= '' then newen = ARGV[3] end
if newdef == def and newen == en then return {0, v} end
redis.call('HSET', KEYS[1], 'definition', newdef, 'enabled', newen,
  'version', tostring(v + 1), 'changed_at', ARGV[4])
redis.call('INCR', KEYS[3])
return {1, v + 1}
"""

REMOVE = r"""
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('INCR', KEYS[3])
return 1
"""

FIRE = r"""
local v = redis.call('HGET', KEYS[1], 'version')
if not v or tonumber(v) ~= tonumber(ARGV[1]) then return 0 end
local last = redis.call('HGET', KEYS[1], 'last_fire')
if last and tonumber(last) >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'version', tostring(tonumber(v) + 1),
  'last_fire', ARGV[2], 'last_fired_at', ARGV[3], 'fired_by', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'fire_count', 1)
return 1
"""


def _canonical(definition: Mapping[str, Any]) -> str:
    dumps(dict(definition), what="schedule entry")
    return json.dumps(
        dict(definition), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def _opt_float(value: bytes | None) -> float | None:
    return None if value is None else float(value)


def _record(name: str, fields: Mapping[bytes, bytes]) -> ScheduleRecord:
    """A stored row as a record; DecodeError (only) when it is not one."""
    fired_by = fields.get(b"fired_by")
    try:
        return ScheduleRecord(
            name=name,
            definition=decode_object(fields[b"definition"]),
            enabled=fields[b"enabled"] == b"1",
            version=int(fields[b"version"]),
            created_at=float(fields[b"created_at"]),
            changed_at=float(fields[b"changed_at"]),
            last_fire=_opt_float(fields.get(b"last_fire")),
            last_fired_at=_opt_float(fields.get(b"last_fired_at")),
            fire_count=int(fields.get(b"fire_count", b"0")),
            fired_by=None if fired_by is None else fired_by.decode(),
        )
    except (KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"stored schedule entry does not decode: {exc}") from None


class RedisSchedules:
    """:class:`stem.contracts.ScheduleStore` on Redis."""

    def __init__(self, conn: Conn, namespace: str) -> None:
        self.conn = conn
        self._tag = f"{namespace}:{{{namespace}:sched}}"
        self._changed = trio.Event()

    def _entry(self, name: str) -> str:
        return f"{self._tag}:e:{name}"

    @property
    def _names(self) -> str:
        return f"{self._tag}:names"

    @property
    def _rev(self) -> str:
        return f"{self._tag}:rev"

    def _fire_signal(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _eval(self, script: str, keys: list[str], args: list[Any]) -> Any:
        client = self.conn.client

        async def call() -> Any:
            return await client.eval(script, len(keys), *keys, *args)

        return await self.conn.run(call)

    async def _hgetall(self, name: str) -> ScheduleRecord | None:
        client = self.conn.client
        key = self._entry(name)

        async def call() -> Any:
            return await client.hgetall(key)

        fields = await self.conn.run(call)
        return _record(name, fields) if fields else None

    async def add(
        self, name: str, definition: Mapping[str, Any], *, enabled: bool = True
    ) -> ScheduleRecord:
        body = _canonical(definition)
        added = await self._eval(
            ADD,
            [self._entry(name), self._names, self._rev],
            [name, body, "1" if enabled else "0", fmt(now())],
        )
        if not int(added):
            raise exists(name)
        self._fire_signal()
        record = await self._hgetall(name)
        assert record is not None
        return record

    async def update(
        self,
        name: str,
        *,
        definition: Mapping[str, Any] | None = None,
        enabled: bool | None = None,
        expected_version: int | None = None,
    ) -> ScheduleRecord:
        status, version = await self._eval(
            UPDATE,
            [self._entry(name), self._names, self._rev],
            [
                "" if expected_version is None else str(expected_version),
                "" if definition is None else _canonical(definition),
                "" if enabled is None else ("1" if enabled else "0"),
                fmt(now()),
            ],
        )
        if int(status) == -1:
            raise not_found(name)
        if int(status) == -2:
            raise conflict(name, int(version), expected_version)
        if int(status) == 1:
            self._fire_signal()
        record = await self._hgetall(name)
        if record is None:
            raise not_found(name)
        return record

    async def remove(self, name: str) -> bool:
        removed = bool(
            int(
                await self._eval(
                    REMOVE, [self._entry(name), self._names, self._rev], [name]
                )
            )
        )
        if removed:
            self._fire_signal()
        return removed

    async def get(self, name: str) -> ScheduleRecord | None:
        return await self._hgetall(name)

    async def list(self) -> builtins.list[ScheduleRecord]:
        client = self.conn.client
        names_key = self._names

        async def call() -> builtins.list[tuple[str, Any]]:
            raw = await client.smembers(names_key)
            names = sorted(n.decode() if isinstance(n, bytes) else n for n in raw)
            pipe = client.pipeline(transaction=False)
            for name in names:
                pipe.hgetall(self._entry(name))
            rows = await pipe.execute()
            return list(zip(names, rows, strict=True))

        pairs = await self.conn.run(call)
        # An entry that no longer decodes is skipped with a warning: one bad
        # entry never hides the others from beat or `stem schedule list`.
        return readable(
            lambda pair: _record(*cast(tuple[str, Any], pair)),
            [pair for pair in pairs if pair[1]],
            "schedule entry",
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
        done = await self._eval(
            FIRE,
            [self._entry(name)],
            [str(expected_version), fmt(tick), fmt(fired_at), owner],
        )
        if not int(done):
            return None
        return await self._hgetall(name)

    async def revision(self) -> int:
        client = self.conn.client
        key = self._rev

        async def call() -> Any:
            return await client.get(key)

        value = await self.conn.run(call)
        return 0 if value is None else int(value)

    async def wait_changed(self, revision: int, *, timeout: float) -> int:
        """Woken at once by a change through this backend; other processes'
        changes are seen within :data:`CHANGE_POLL` seconds (one GET)."""
        return await wait_for_change(
            revision,
            timeout=timeout,
            read=self.revision,
            changed=lambda: self._changed,
            poll=CHANGE_POLL,
        )
