"""Workflow runs, steps, timers, events and leases on the SQLite file.

A run is one row of ``wf_runs``: the whole record as JSON in ``body`` plus the
columns the queries filter on (workflow, status, parent, created_at, due_at).
Every method is one ``BEGIN IMMEDIATE`` transaction, so claims, wakes and
event deliveries are atomic across the processes sharing the file. Changes
that may make a run due bump the ``workflows`` counter (the change cursor);
``wait_due`` and ``wait_run`` are woken at once by writes of this process and
poll for other processes' writes every ``poll_interval`` seconds (one
``PRAGMA data_version`` read per poll).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import trio

from stem import _clock
from stem._codec import dumps
from stem._errors import DecodeError
from stem._result import ErrorInfo
from stem._wfcodec import (
    decode_run,
    decode_step,
    encode_run,
    encode_step,
    log_unreadable_run,
    readable_run,
)
from stem._wfstate import (
    ACTIVE_SQL,
    cancelling,
    check_final,
    check_held,
    check_sendable,
    claimed,
    finished,
    released,
    renewed,
    resolvable,
    resolved,
    run_filters,
    stepped,
    suspended,
    version_filter,
    woken,
)
from stem.contracts import WorkflowRun, WorkflowStep

from ._db import Database, Signal


def _get(conn: sqlite3.Connection, run_id: str) -> WorkflowRun | None:
    row = conn.execute(
        "SELECT body FROM wf_runs WHERE run_id = ?", (run_id,)
    ).fetchone()
    return None if row is None else decode_run(row[0])


def _put(conn: sqlite3.Connection, run: WorkflowRun) -> None:
    conn.execute(
        "INSERT INTO wf_runs (run_id, workflow, version, fence, status, parent_id, "
        "created_at, due_at, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (run_id) DO UPDATE SET status = excluded.status, "
        "due_at = excluded.due_at, body = excluded.body, fence = excluded.fence",
        (
            run.run_id,
            run.workflow,
            run.version,
            run.fence,
            run.status,
            run.parent_id,
            run.created_at,
            run.due_at,
            encode_run(run),
        ),
    )


def _claimable(
    names: Sequence[str], max_versions: Mapping[str, int] | None
) -> tuple[str, tuple[Any, ...]]:
    """The SQL condition (and its parameters) on an active run's workflow
    and version for :meth:`claim` and :meth:`next_due`."""
    parts: list[str] = []
    params: list[Any] = []
    for name, top in version_filter(names, max_versions):
        if top is None:
            parts.append("workflow = ?")
            params.append(name)
        else:
            parts.append("(workflow = ? AND version <= ?)")
            params.extend((name, top))
    return f"{ACTIVE_SQL} AND ({' OR '.join(parts)})", tuple(params)


def _bump(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE counters SET value = value + 1 WHERE name = 'workflows'")


def _wake(conn: sqlite3.Connection, run_id: str, at: float) -> None:
    run = woken(_get(conn, run_id), at)
    if run is not None:
        _put(conn, run)


def _resolve(
    conn: sqlite3.Connection, run_id: str, index: int, payload: str, at: float
) -> bool:
    """Resolve watcher ``(run_id, index)``; False (only the watcher dropped)
    when its run is no longer active."""
    conn.execute(
        "DELETE FROM wf_watchers WHERE run_id = ? AND idx = ?", (run_id, index)
    )
    if not resolvable(_get(conn, run_id)):
        return False
    row = conn.execute(
        "SELECT body FROM wf_steps WHERE run_id = ? AND idx = ?", (run_id, index)
    ).fetchone()
    if row is not None:
        step = resolved(decode_step(row[0]), payload, at)
        conn.execute(
            "UPDATE wf_steps SET body = ? WHERE run_id = ? AND idx = ?",
            (encode_step(step), run_id, index),
        )
    _wake(conn, run_id, at)
    return True


@attrs.define(eq=False)
class SQLiteWorkflows:
    """:class:`stem.contracts.WorkflowStore` on one SQLite file."""

    db: Database
    poll_interval: float
    _signal: Signal = attrs.field(factory=Signal, init=False)

    async def _write(self, fn: Any, *, fire: bool = True) -> Any:
        result = await self.db.write(fn)
        if fire:
            self._signal.fire()
            self.db.notify(b"w")
        return result

    def woken(self) -> None:
        """Another process changed workflow runs."""
        self._signal.fire()

    async def _change(
        self,
        run_id: str,
        change: Callable[[WorkflowRun | None], WorkflowRun | None],
        *,
        bump: bool = True,
        fire: bool = True,
        then: Callable[[sqlite3.Connection], object] | None = None,
    ) -> bool:
        """One transaction: store ``change(run)`` and call ``then(conn)``;
        False (nothing written) where ``change`` returns None, and nothing
        written where it raises."""

        def run_(conn: sqlite3.Connection) -> bool:
            new = change(_get(conn, run_id))
            if new is None:
                return False
            _put(conn, new)
            if then is not None:
                then(conn)
            if bump:
                _bump(conn)
            return True

        return bool(await self._write(run_, fire=fire))

    # ----------------------------------------------------------- runs

    async def create_run(self, run: WorkflowRun) -> bool:
        body_check = encode_run(run)  # raises EncodeError before any write
        del body_check

        def run_(conn: sqlite3.Connection) -> bool:
            if _get(conn, run.run_id) is not None:
                return False
            _put(conn, attrs.evolve(run, history=()))
            _bump(conn)
            return True

        return bool(await self._write(run_))

    async def get_run(self, run_id: str) -> WorkflowRun | None:
        return await self.db.read(lambda conn: _get(conn, run_id))

    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        status: str | None = None,
        parent_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[WorkflowRun]:
        filters = run_filters(workflow=workflow, status=status, parent_id=parent_id)
        where = [f"{column} = ?" for column, _ in filters]
        params = [value for _, value in filters]
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        sql = (
            f"SELECT body FROM wf_runs {clause} ORDER BY created_at, run_id "
            "LIMIT ? OFFSET ?"
        )
        rows = await self.db.read(
            lambda conn: conn.execute(sql, (*params, limit, offset)).fetchall()
        )
        return [run for (body,) in rows if (run := readable_run(body)) is not None]

    # ----------------------------------------------------------- steps

    async def save_step(self, step: WorkflowStep, *, fence: int) -> None:
        body = encode_step(step)
        at = _clock.now()

        def run_(conn: sqlite3.Connection) -> None:
            # The lease check of stem._wfstate.held restated on the columns (a
            # run is leased exactly while its status is 'running'), so the
            # common case moves updated_at without decoding the record; when
            # it matches nothing, the pure rule says why (and raises).
            moved = conn.execute(
                "UPDATE wf_runs SET body = json_set(body, '$.updated_at', json(?)) "
                "WHERE run_id = ? AND status = 'running' AND fence = ? "
                "AND due_at > ?",
                (repr(at), step.run_id, fence, at),
            ).rowcount
            if moved != 1:
                _put(conn, stepped(_get(conn, step.run_id), step.run_id, fence, at))
            conn.execute(
                "INSERT OR REPLACE INTO wf_steps (run_id, idx, body) VALUES (?, ?, ?)",
                (step.run_id, step.index, body),
            )

        await self._write(run_, fire=False)

    async def get_step(self, run_id: str, index: int) -> WorkflowStep | None:
        row = await self.db.read(
            lambda conn: conn.execute(
                "SELECT body FROM wf_steps WHERE run_id = ? AND idx = ?",
                (run_id, index),
            ).fetchone()
        )
        return None if row is None else decode_step(row[0])

    async def list_steps(self, run_id: str) -> list[WorkflowStep]:
        rows = await self.db.read(
            lambda conn: conn.execute(
                "SELECT body FROM wf_steps WHERE run_id = ? ORDER BY idx", (run_id,)
            ).fetchall()
        )
        return [decode_step(row[0]) for row in rows]

    # ----------------------------------------------------------- leases

    async def claim(
        self,
        owner: str,
        *,
        names: Sequence[str],
        lease: float,
        limit: int = 1,
        max_versions: Mapping[str, int] | None = None,
    ) -> list[WorkflowRun]:
        if not names or limit < 1:
            return []
        at = _clock.now()
        condition, params = _claimable(names, max_versions)

        def run_(conn: sqlite3.Connection) -> list[WorkflowRun]:
            rows = conn.execute(
                f"SELECT run_id, body FROM wf_runs WHERE due_at IS NOT NULL "
                f"AND due_at <= ? AND {condition} ORDER BY due_at, run_id LIMIT ?",
                (at, *params, limit),
            ).fetchall()
            taken = []
            for run_id, body in rows:
                try:
                    run = decode_run(body)
                except DecodeError as exc:
                    # Set aside (body kept), never claimed again.
                    log_unreadable_run(run_id, exc)
                    conn.execute(
                        "UPDATE wf_runs SET status = 'failed', due_at = NULL "
                        "WHERE run_id = ?",
                        (run_id,),
                    )
                    continue
                taken.append(claimed(run, owner, lease=lease, at=at))
            for run in taken:
                _put(conn, run)
            return taken

        result: list[WorkflowRun] = await self._write(run_, fire=False)
        return result

    async def renew(self, run_id: str, fence: int, *, lease: float) -> None:
        at = _clock.now()
        await self._change(
            run_id,
            lambda run: renewed(run, run_id, fence, lease=lease, at=at),
            bump=False,
            fire=False,
        )

    async def suspend(
        self,
        run_id: str,
        fence: int,
        *,
        until: float | None,
        wakes: int,
        current_step: str | None = None,
    ) -> None:
        at = _clock.now()
        await self._change(
            run_id,
            lambda run: suspended(
                run,
                run_id,
                fence,
                until=until,
                wakes=wakes,
                current_step=current_step,
                at=at,
            ),
        )

    async def release(self, run_id: str, fence: int) -> None:
        at = _clock.now()
        await self._change(run_id, lambda run: released(run, run_id, fence, at))

    async def wake(self, run_ids: Sequence[str]) -> None:
        if not run_ids:
            return
        at = _clock.now()

        def run_(conn: sqlite3.Connection) -> None:
            for run_id in run_ids:
                _wake(conn, run_id, at)
            _bump(conn)

        await self._write(run_)

    async def finish(
        self,
        run_id: str,
        fence: int,
        *,
        status: str,
        result: Any = None,
        error: ErrorInfo | None = None,
    ) -> None:
        check_final(status)
        dumps(result, what="result")
        at = _clock.now()

        def drop_events(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM wf_watchers WHERE run_id = ?", (run_id,))
            conn.execute("DELETE FROM wf_mailbox WHERE run_id = ?", (run_id,))

        await self._change(
            run_id,
            lambda run: finished(
                run, run_id, fence, status=status, result=result, error=error, at=at
            ),
            bump=False,
            then=drop_events,
        )

    async def request_cancel(self, run_id: str) -> bool:
        at = _clock.now()
        return await self._change(run_id, lambda run: cancelling(run, at))

    # ----------------------------------------------------------- events

    async def watch(self, run_id: str, index: int, topic: str, *, fence: int) -> bool:
        at = _clock.now()

        def run_(conn: sqlite3.Connection) -> bool:
            check_held(_get(conn, run_id), run_id, fence, at)
            row = conn.execute(
                "SELECT body FROM wf_steps WHERE run_id = ? AND idx = ?",
                (run_id, index),
            ).fetchone()
            if row is not None and decode_step(row[0]).status == "done":
                return True
            if conn.execute(
                "SELECT 1 FROM wf_watchers WHERE run_id = ? AND idx = ?",
                (run_id, index),
            ).fetchone():
                return False
            message = conn.execute(
                "SELECT seq, payload FROM wf_mailbox WHERE run_id = ? AND topic = ? "
                "ORDER BY seq LIMIT 1",
                (run_id, topic),
            ).fetchone()
            if message is not None:
                conn.execute("DELETE FROM wf_mailbox WHERE seq = ?", (message[0],))
                _resolve(conn, run_id, index, message[1], at)
                return True
            conn.execute(
                "INSERT INTO wf_watchers (run_id, idx, topic) VALUES (?, ?, ?)",
                (run_id, index, topic),
            )
            return False

        return bool(await self._write(run_, fire=False))

    async def unwatch(self, run_id: str, index: int, *, fence: int) -> bool:
        at = _clock.now()

        def run_(conn: sqlite3.Connection) -> bool:
            check_held(_get(conn, run_id), run_id, fence, at)
            cur = conn.execute(
                "DELETE FROM wf_watchers WHERE run_id = ? AND idx = ?", (run_id, index)
            )
            return cur.rowcount > 0

        return bool(await self._write(run_, fire=False))

    async def emit(self, topic: str, payload: Any) -> list[str]:
        body = dumps(payload, what="event payload")
        at = _clock.now()

        def run_(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT run_id, idx FROM wf_watchers WHERE topic = ?", (topic,)
            ).fetchall()
            reached = {
                str(run_id)
                for run_id, index in rows
                if _resolve(conn, run_id, int(index), body, at)
            }
            if reached:
                _bump(conn)
            return sorted(reached)

        result: list[str] = await self._write(run_)
        return result

    async def send(self, run_id: str, topic: str, payload: Any) -> bool:
        body = dumps(payload, what="event payload")
        at = _clock.now()

        def run_(conn: sqlite3.Connection) -> bool:
            check_sendable(_get(conn, run_id), run_id)
            row = conn.execute(
                "SELECT idx FROM wf_watchers WHERE run_id = ? AND topic = ? "
                "ORDER BY idx LIMIT 1",
                (run_id, topic),
            ).fetchone()
            if row is not None:
                _resolve(conn, run_id, int(row[0]), body, at)
                _bump(conn)
                return True
            conn.execute(
                "INSERT INTO wf_mailbox (run_id, topic, payload) VALUES (?, ?, ?)",
                (run_id, topic, body),
            )
            return False

        return bool(await self._write(run_))

    # ----------------------------------------------------------- waiting

    async def next_due(
        self, names: Sequence[str], *, max_versions: Mapping[str, int] | None = None
    ) -> float | None:
        if not names:
            return None
        condition, params = _claimable(names, max_versions)
        row = await self.db.read(
            lambda conn: conn.execute(
                f"SELECT MIN(due_at) FROM wf_runs WHERE due_at IS NOT NULL "
                f"AND {condition}",
                params,
            ).fetchone()
        )
        return None if row is None or row[0] is None else float(row[0])

    @staticmethod
    def _cursor(conn: sqlite3.Connection) -> int:
        row = conn.execute(
            "SELECT value FROM counters WHERE name = 'workflows'"
        ).fetchone()
        return 0 if row is None else int(row[0])

    async def wait_due(self, cursor: int | None, *, timeout: float) -> int:
        deadline = trio.current_time() + max(timeout, 0.0)
        seen: int | None = None
        current = cursor
        while True:
            snapshot = self._signal.snapshot()
            seen, found = await self.db.read_if_changed(seen, self._cursor)
            if found is not None:
                current = found
            if cursor is None or (current is not None and current != cursor):
                assert current is not None
                return current
            remaining = deadline - trio.current_time()
            if remaining <= 0:
                return cursor
            await Signal.wait(snapshot, min(remaining, self.poll_interval))
            if snapshot.is_set():
                seen = None

    async def wait_run(self, run_id: str, *, timeout: float) -> WorkflowRun | None:
        deadline = trio.current_time() + max(timeout, 0.0)
        seen: int | None = None
        while True:
            snapshot = self._signal.snapshot()
            seen, found = await self.db.read_if_changed(
                seen, lambda conn: (_get(conn, run_id),)
            )
            if found is not None and found[0] is not None and found[0].is_final:
                return found[0]
            remaining = deadline - trio.current_time()
            if remaining <= 0:
                return None
            await Signal.wait(snapshot, min(remaining, self.poll_interval))
            if snapshot.is_set():
                seen = None
