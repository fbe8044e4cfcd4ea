"""Task results, group counters, one-shot claims and unique keys.

Every row that can expire carries ``expires_at`` (epoch seconds from Stem's
clock, passed in as a parameter; SQLite's own clock is never used) and every
read filters on it, so an expired record is gone the moment its TTL passes;
the backend's reaper only reclaims the space.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial

import attrs
import trio

from stem import _clock
from stem._codec import decode_result, encode_result, readable
from stem._groupstate import expired_error, group_deadlines, group_phase
from stem._result import TaskResult
from stem._taskquery import (
    SCAN_BOUND,
    check_state,
    clamp_limit,
    make_cursor,
    parse_cursor,
)
from stem.contracts import TaskPage

from ._db import Database, Signal

_LIVE = "(expires_at IS NULL OR expires_at > ?)"
#: Every column of a results row; the last four list the record (TaskQuery).
_COLUMNS = "task_id, terminal, expires_at, body, updated_at, state, name, queue"
_Row = tuple[str, int, float | None, bytes, float, str, str, str]


def _listed(result: TaskResult) -> tuple[float, str, str, str]:
    return (result.updated_at, result.state.value, result.name, result.queue)


_CHUNK = 500


def _expiry(now: float, ttl: float | None) -> float | None:
    return None if ttl is None else now + ttl


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


@attrs.define(eq=False)
class _Waiters:
    signal: Signal = attrs.field(factory=Signal)
    count: int = 0


@attrs.define(eq=False)
class SQLiteResults:
    """:class:`stem.contracts.ResultBackend` on one SQLite file."""

    db: Database
    poll_interval: float
    _waiters: dict[str, _Waiters] = attrs.field(factory=dict, init=False)

    async def set_state(
        self, results: Sequence[TaskResult], *, ttl: float | None = None
    ) -> list[bool]:
        if not results:
            return []
        now = _clock.now()
        expires = _expiry(now, ttl)
        encoded = [(r, r.state.is_terminal, encode_result(r)) for r in results]
        ids = sorted({r.task_id for r in results})

        def run(conn: sqlite3.Connection) -> list[bool]:
            final: set[str] = set()
            for part in _chunks(ids):
                marks = ",".join("?" * len(part))
                final.update(
                    row[0]
                    for row in conn.execute(
                        f"SELECT task_id FROM results WHERE task_id IN ({marks}) "
                        f"AND terminal = 1 AND {_LIVE}",
                        (*part, now),
                    )
                )
            stored: list[bool] = []
            rows: dict[str, _Row] = {}
            for result, terminal, body in encoded:
                task_id = result.task_id
                if task_id in final:
                    stored.append(False)
                    continue
                rows[task_id] = (
                    task_id,
                    int(terminal),
                    expires,
                    body,
                    *_listed(result),
                )
                if terminal:
                    final.add(task_id)
                stored.append(True)
            conn.executemany(
                f"INSERT INTO results ({_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (task_id) DO UPDATE SET "
                "terminal = excluded.terminal, expires_at = excluded.expires_at, "
                "body = excluded.body, updated_at = excluded.updated_at, "
                "state = excluded.state, name = excluded.name, "
                "queue = excluded.queue",
                rows.values(),
            )
            return stored

        stored = await self.db.write(run)
        for task_id in ids:
            waiters = self._waiters.get(task_id)
            if waiters is not None:
                waiters.signal.fire()
        if any(r.state.is_terminal for r in results):
            self.db.notify(b"r")
        return stored

    def woken(self) -> None:
        """Another process stored terminal results: every waiter looks."""
        for waiters in self._waiters.values():
            waiters.signal.fire()

    async def create(
        self, results: Sequence[TaskResult], *, ttl: float | None = None
    ) -> list[bool]:
        """Store records only where the task has none live (one write
        transaction: atomic across processes sharing the file)."""
        if not results:
            return []
        now = _clock.now()
        rows = self.rows(results, ttl=ttl, now=now)
        return await self.db.write(lambda conn: self.create_rows(conn, rows, now))

    @staticmethod
    def rows(
        results: Sequence[TaskResult], *, ttl: float | None, now: float
    ) -> list[_Row]:
        """``results`` as rows of the ``results`` table (encoded here, out of
        the database thread)."""
        expires = _expiry(now, ttl)
        return [
            (
                r.task_id,
                int(r.state.is_terminal),
                expires,
                encode_result(r),
                *_listed(r),
            )
            for r in results
        ]

    @staticmethod
    def create_rows(
        conn: sqlite3.Connection,
        rows: Sequence[_Row],
        now: float,
    ) -> list[bool]:
        """Insert the rows whose task has no live record (run inside a write
        transaction); an expired record is replaced. Returns the flags."""
        ids = sorted({row[0] for row in rows})
        taken: set[str] = set()
        for part in _chunks(ids):
            marks = ",".join("?" * len(part))
            taken.update(
                row[0]
                for row in conn.execute(
                    f"SELECT task_id FROM results WHERE task_id IN ({marks}) "
                    f"AND {_LIVE}",
                    (*part, now),
                )
            )
        flags: list[bool] = []
        fresh = []
        for row in rows:
            if row[0] in taken:
                flags.append(False)
                continue
            taken.add(row[0])
            fresh.append(row)
            flags.append(True)
        conn.executemany(
            f"INSERT OR REPLACE INTO results ({_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            fresh,
        )
        return flags

    @staticmethod
    def _get(conn: sqlite3.Connection, task_id: str, now: float) -> TaskResult | None:
        row = conn.execute(
            f"SELECT body FROM results WHERE task_id = ? AND {_LIVE}", (task_id, now)
        ).fetchone()
        return None if row is None else decode_result(row[0])

    @classmethod
    def _get_boxed(
        cls, conn: sqlite3.Connection, *, task_id: str, now: float
    ) -> tuple[TaskResult | None]:
        return (cls._get(conn, task_id, now),)

    async def get(self, task_id: str) -> TaskResult | None:
        now = _clock.now()
        return await self.db.read(lambda conn: self._get(conn, task_id, now))

    async def get_many(self, task_ids: Sequence[str]) -> list[TaskResult | None]:
        if not task_ids:
            return []
        now = _clock.now()
        unique = sorted(set(task_ids))

        def run(conn: sqlite3.Connection) -> dict[str, bytes]:
            found: dict[str, bytes] = {}
            for part in _chunks(unique):
                marks = ",".join("?" * len(part))
                for task_id, body in conn.execute(
                    f"SELECT task_id, body FROM results WHERE task_id IN ({marks}) "
                    f"AND {_LIVE}",
                    (*part, now),
                ):
                    found[task_id] = body
            return found

        found = await self.db.read(run)
        decoded = {task_id: decode_result(body) for task_id, body in found.items()}
        return [decoded.get(task_id) for task_id in task_ids]

    @contextmanager
    def _watch(self, task_id: str) -> Iterator[Signal]:
        waiters = self._waiters.setdefault(task_id, _Waiters())
        waiters.count += 1
        try:
            yield waiters.signal
        finally:
            waiters.count -= 1
            if waiters.count == 0:
                del self._waiters[task_id]

    async def wait(self, task_id: str, *, timeout: float) -> TaskResult | None:
        """The terminal result, or None after ``timeout``. A write in this
        process wakes it at once; another process's within ``poll_interval``
        (a ``PRAGMA data_version`` read per poll, the row read only on change).
        """
        deadline = trio.current_time() + max(timeout, 0.0)
        seen: int | None = None
        with self._watch(task_id) as signal:
            while True:
                snapshot = signal.snapshot()
                now = _clock.now()
                seen, found = await self.db.read_if_changed(
                    seen, partial(self._get_boxed, task_id=task_id, now=now)
                )
                if found is not None and found[0] is not None and found[0].is_terminal:
                    return found[0]
                remaining = deadline - trio.current_time()
                if remaining <= 0:
                    return None
                await Signal.wait(snapshot, min(remaining, self.poll_interval))
                if snapshot.is_set():
                    seen = None

    async def forget(self, task_id: str) -> None:
        await self.db.write(
            lambda conn: conn.execute(
                "DELETE FROM results WHERE task_id = ?", (task_id,)
            )
        )

    # ------------------------------------------------------------ groups

    async def group_add(
        self, group_id: str, index: int, result: TaskResult, *, ttl: float | None = None
    ) -> int:
        """One transaction: judge the group's record (stem._groupstate),
        upsert the member and count it once."""
        now = _clock.now()
        expires, forget = group_deadlines(now, ttl)
        body = encode_result(result)

        def run(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT n, expires_at, forget_at FROM groups WHERE group_id = ?",
                (group_id,),
            ).fetchone()
            phase = "gone" if row is None else group_phase(row[1], row[2], now)
            if phase == "expired":
                raise expired_error(group_id, row[1], now)
            if phase == "gone":
                # Leftovers of a forgotten group the reaper has not reached.
                conn.execute(
                    "DELETE FROM group_members WHERE group_id = ?", (group_id,)
                )
                count = 0
            else:
                count = int(row[0])
            known = conn.execute(
                "SELECT 1 FROM group_members WHERE group_id = ? AND idx = ?",
                (group_id, index),
            ).fetchone()
            conn.execute(
                "INSERT OR REPLACE INTO group_members "
                "(group_id, idx, expires_at, body) VALUES (?, ?, NULL, ?)",
                (group_id, index, body),
            )
            count += 0 if known else 1
            conn.execute(
                "INSERT OR REPLACE INTO groups (group_id, n, expires_at, forget_at) "
                "VALUES (?, ?, ?, ?)",
                (group_id, count, expires, forget),
            )
            return count

        return await self.db.write(run)

    async def group_results(self, group_id: str) -> dict[int, TaskResult]:
        now = _clock.now()

        def run(conn: sqlite3.Connection) -> list[tuple[int, bytes]]:
            row = conn.execute(
                "SELECT expires_at, forget_at FROM groups WHERE group_id = ?",
                (group_id,),
            ).fetchone()
            if row is None or group_phase(row[0], row[1], now) != "live":
                return []
            return conn.execute(
                "SELECT idx, body FROM group_members WHERE group_id = ?", (group_id,)
            ).fetchall()

        rows = await self.db.read(run)
        return {int(idx): decode_result(body) for idx, body in rows}

    # ------------------------------------------------------------ one-shot keys

    async def claim_once(
        self, key: str, owner: str, *, ttl: float | None = None
    ) -> bool:
        now = _clock.now()
        expires = _expiry(now, ttl)

        def run(conn: sqlite3.Connection) -> bool:
            held = conn.execute(
                f"SELECT 1 FROM claims WHERE key = ? AND {_LIVE}", (key, now)
            ).fetchone()
            if held is not None:
                return False
            conn.execute(
                "INSERT OR REPLACE INTO claims (key, owner, expires_at) "
                "VALUES (?, ?, ?)",
                (key, owner, expires),
            )
            return True

        return await self.db.write(run)

    async def reserve_unique(self, key: str, task_id: str, *, ttl: float | None) -> str:
        now = _clock.now()
        expires = _expiry(now, ttl)

        def run(conn: sqlite3.Connection) -> str:
            row = conn.execute(
                f"SELECT task_id FROM uniques WHERE key = ? AND {_LIVE}", (key, now)
            ).fetchone()
            if row is not None:
                return str(row[0])
            conn.execute(
                "INSERT OR REPLACE INTO uniques (key, task_id, expires_at) "
                "VALUES (?, ?, ?)",
                (key, task_id, expires),
            )
            return task_id

        return await self.db.write(run)

    async def release_unique(self, key: str, task_id: str) -> None:
        await self.db.write(
            lambda conn: conn.execute(
                "DELETE FROM uniques WHERE key = ? AND task_id = ?", (key, task_id)
            )
        )

    # -- listing (stem.contracts.TaskQuery) ----------------------------------

    async def list_tasks(
        self,
        *,
        state: str | None = None,
        queue: str | None = None,
        name: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> TaskPage:
        """Newest first through the ``results_recent`` index; a filter
        looks through at most SCAN_BOUND rows of that order."""
        state = check_state(state)
        cursor = parse_cursor(before)
        limit = clamp_limit(limit)
        now = _clock.now()
        where = [_LIVE, "updated_at IS NOT NULL"]
        args: list[object] = [now]
        if cursor is not None:
            where.append("(updated_at, task_id) < (?, ?)")
            args += [cursor[0], cursor[1]]
        inner = (
            "SELECT task_id, body, state, queue, name FROM results WHERE "
            + " AND ".join(where)
            + " ORDER BY updated_at DESC, task_id DESC"
        )
        outer: list[str] = []
        if state is not None or queue is not None or name is not None:
            inner += f" LIMIT {SCAN_BOUND}"
            if state is not None:
                outer.append("state = ?")
                args.append(state)
            if queue is not None:
                outer.append("queue = ?")
                args.append(queue)
            if name is not None:
                outer.append("name = ?")
                args.append(name)
        sql = f"SELECT body FROM ({inner})"
        if outer:
            sql += " WHERE " + " AND ".join(outer)
        sql += " LIMIT ?"
        args.append(limit + 1)
        rows = await self.db.read(lambda conn: conn.execute(sql, args).fetchall())
        found = readable(decode_result, [row[0] for row in rows], "result")
        more = len(rows) > limit
        found = found[:limit]
        return TaskPage(
            results=tuple(found),
            next_before=make_cursor(found[-1]) if more and found else None,
        )

    async def finished_counts(
        self, *, since: float, bucket: float = 60.0
    ) -> dict[float, dict[str, int]]:
        now = _clock.now()
        sql = (
            "SELECT CAST(updated_at / ? AS INTEGER), state, COUNT(*) FROM results "
            f"WHERE updated_at >= ? AND terminal = 1 AND {_LIVE} GROUP BY 1, 2"
        )
        rows = await self.db.read(
            lambda conn: conn.execute(sql, (bucket, since, now)).fetchall()
        )
        counts: dict[float, dict[str, int]] = {}
        for slot, state, count in rows:
            counts.setdefault(float(slot) * bucket, {})[str(state)] = int(count)
        return counts
