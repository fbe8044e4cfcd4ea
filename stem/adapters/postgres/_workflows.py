"""Workflow runs, steps, timers, events and leases on Postgres tables.

A run is one row of ``wf_runs`` (the record as JSON in ``body`` plus the
columns queries filter on). Every change is one transaction that locks the
run rows it touches (``FOR UPDATE``; claims use ``SKIP LOCKED``), always run
rows before watcher rows, so concurrent emits, sends and claims serialize
without deadlocks. Changes bump ``wf_cursor`` and NOTIFY ``__wf__`` on the
results channel (``__wfrun__<id>`` when a run ends), which wakes
``wait_due``/``wait_run`` in every process through the LISTEN hub.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs
import trio

from stem._clock import now
from stem._codec import dumps
from stem._errors import BrokerUnavailable, DecodeError
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

from ._config import PostgresConfig
from ._db import Db
from ._notify import Hub

_WAKE = "__wf__"
_FINAL = "__wfrun__"


def _claimable(
    names: Sequence[str], max_versions: Mapping[str, int] | None, first: int
) -> tuple[str, list[Any]]:
    """The SQL condition (parameters numbered from ``$first``) on an active
    run's workflow and version for :meth:`claim` and :meth:`next_due`."""
    any_version = [
        name for name, top in version_filter(names, max_versions) if top is None
    ]
    limited = [
        (name, top)
        for name, top in version_filter(names, max_versions)
        if top is not None
    ]
    parts: list[str] = []
    params: list[Any] = []
    if any_version:
        params.append(any_version)
        parts.append(f"workflow = ANY(${first}::text[])")
    for name, top in limited:
        n = first + len(params)
        params.extend((name, top))
        parts.append(f"(workflow = ${n} AND version <= ${n + 1})")
    return f"{ACTIVE_SQL} AND ({' OR '.join(parts)})", params


@attrs.define(eq=False)
class PostgresWorkflows:
    """:class:`stem.contracts.WorkflowStore` on Postgres."""

    config: PostgresConfig
    db: Db
    hub: Hub

    @property
    def _s(self) -> str:
        return self.config.quoted_schema

    # ----------------------------------------------------------- plumbing

    async def _txn(self, fn: Callable[[Any], Awaitable[Any]]) -> Any:
        async def run(conn: Any) -> Any:
            async with conn.transaction():
                return await fn(conn)

        return await self.db.run(run)

    async def _get(self, conn: Any, run_id: str, *, lock: bool) -> WorkflowRun | None:
        body = await conn.fetchval(
            f"SELECT body FROM {self._s}.wf_runs WHERE run_id = $1"
            + (" FOR UPDATE" if lock else ""),
            run_id,
        )
        return None if body is None else decode_run(body)

    async def _put(self, conn: Any, run: WorkflowRun) -> None:
        await conn.execute(
            f"INSERT INTO {self._s}.wf_runs (run_id, workflow, status, parent_id, "
            "created_at, due_at, body, version, fence) VALUES ($1, $2, $3, $4, $5, "
            "$6, $7, $8, $9) ON CONFLICT (run_id) DO UPDATE SET status = "
            "excluded.status, due_at = excluded.due_at, body = excluded.body, "
            "fence = excluded.fence",
            run.run_id,
            run.workflow,
            run.status,
            run.parent_id,
            run.created_at,
            run.due_at,
            encode_run(attrs.evolve(run, history=())),
            run.version,
            run.fence,
        )

    async def _bump(self, conn: Any, key: str = _WAKE) -> None:
        if key == _WAKE:
            await conn.execute(f"UPDATE {self._s}.wf_cursor SET value = value + 1")
        await conn.execute(
            "SELECT pg_notify($1, $2)", self.config.channel("results"), key
        )

    async def _wake(self, conn: Any, run_id: str, at: float) -> None:
        run = woken(await self._get(conn, run_id, lock=True), at)
        if run is not None:
            await self._put(conn, run)

    async def _resolve(
        self, conn: Any, run_id: str, index: int, payload: str, at: float
    ) -> bool:
        """Resolve watcher ``(run_id, index)`` (its run row locked by the
        caller); False (only the watcher dropped) when the run is no longer
        active."""
        s = self._s
        await conn.execute(
            f"DELETE FROM {s}.wf_watchers WHERE run_id = $1 AND idx = $2", run_id, index
        )
        if not resolvable(await self._get(conn, run_id, lock=True)):
            return False
        body = await conn.fetchval(
            f"SELECT body FROM {s}.wf_steps WHERE run_id = $1 AND idx = $2",
            run_id,
            index,
        )
        if body is not None:
            step = resolved(decode_step(body), payload, at)
            await conn.execute(
                f"UPDATE {s}.wf_steps SET body = $3 WHERE run_id = $1 AND idx = $2",
                run_id,
                index,
                encode_step(step),
            )
        await self._wake(conn, run_id, at)
        return True

    # ----------------------------------------------------------- runs

    async def create_run(self, run: WorkflowRun) -> bool:
        encode_run(run)

        async def fn(conn: Any) -> bool:
            if await self._get(conn, run.run_id, lock=False) is not None:
                return False
            inserted = await conn.fetchval(
                f"INSERT INTO {self._s}.wf_runs (run_id, workflow, status, parent_id, "
                "created_at, due_at, body, version, fence) VALUES ($1, $2, $3, $4, "
                "$5, $6, $7, $8, $9) ON CONFLICT (run_id) DO NOTHING RETURNING 1",
                run.run_id,
                run.workflow,
                run.status,
                run.parent_id,
                run.created_at,
                run.due_at,
                encode_run(attrs.evolve(run, history=())),
                run.version,
                run.fence,
            )
            if inserted is None:
                return False
            await self._bump(conn)
            return True

        return bool(await self._txn(fn))

    async def get_run(self, run_id: str) -> WorkflowRun | None:
        result: WorkflowRun | None = await self.db.run(
            lambda conn: self._get(conn, run_id, lock=False)
        )
        return result

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
        where = [f"{column} = ${n}" for n, (column, _) in enumerate(filters, 1)]
        params = [value for _, value in filters]
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        n = len(params)
        sql = (
            f"SELECT body FROM {self._s}.wf_runs {clause} "
            f"ORDER BY created_at, run_id LIMIT ${n + 1} OFFSET ${n + 2}"
        )

        async def fn(conn: Any) -> list[Any]:
            rows: list[Any] = await conn.fetch(sql, *params, limit, offset)
            return rows

        rows = await self.db.run(fn)
        return [run for row in rows if (run := readable_run(row[0])) is not None]

    # ----------------------------------------------------------- steps

    async def save_step(self, step: WorkflowStep, *, fence: int) -> None:
        body = encode_step(step)
        at = now()
        s = self._s

        async def fast(conn: Any) -> bool:
            # One statement, no explicit transaction: the lease check of
            # stem._wfstate.held restated on the columns (a run is leased
            # exactly while its status is 'running'), the run's updated_at
            # moved and the step upserted. When it matches nothing, the
            # transaction below asks the pure rule why.
            written = await conn.fetchval(
                f"""WITH run AS (
                    UPDATE {s}.wf_runs SET body = jsonb_set(
                        body::jsonb, '{{updated_at}}', to_jsonb($4::float8))::text
                    WHERE run_id = $1 AND status = 'running' AND fence = $3
                      AND due_at > $4
                    RETURNING run_id
                ), step AS (
                    INSERT INTO {s}.wf_steps (run_id, idx, body)
                    SELECT run_id, $2, $5 FROM run
                    ON CONFLICT (run_id, idx) DO UPDATE SET body = excluded.body
                    RETURNING 1
                ) SELECT count(*) FROM step""",
                step.run_id,
                step.index,
                fence,
                at,
                body,
            )
            return bool(written)

        if await self.db.run(fast):
            return

        async def write_step(conn: Any) -> None:
            await conn.execute(
                f"INSERT INTO {s}.wf_steps (run_id, idx, body) VALUES "
                "($1, $2, $3) ON CONFLICT (run_id, idx) DO UPDATE SET body = "
                "excluded.body",
                step.run_id,
                step.index,
                body,
            )

        await self._change(
            step.run_id,
            lambda run: stepped(run, step.run_id, fence, at),
            notify=None,
            then=write_step,
        )

    async def get_step(self, run_id: str, index: int) -> WorkflowStep | None:
        async def fn(conn: Any) -> Any:
            return await conn.fetchval(
                f"SELECT body FROM {self._s}.wf_steps WHERE run_id = $1 AND idx = $2",
                run_id,
                index,
            )

        body = await self.db.run(fn)
        return None if body is None else decode_step(body)

    async def list_steps(self, run_id: str) -> list[WorkflowStep]:
        async def fn(conn: Any) -> list[Any]:
            rows: list[Any] = await conn.fetch(
                f"SELECT body FROM {self._s}.wf_steps WHERE run_id = $1 ORDER BY idx",
                run_id,
            )
            return rows

        return [decode_step(row[0]) for row in await self.db.run(fn)]

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
        at = now()
        condition, params = _claimable(names, max_versions, 3)

        async def fn(conn: Any) -> list[WorkflowRun]:
            rows = await conn.fetch(
                f"SELECT run_id, body FROM {self._s}.wf_runs WHERE due_at IS NOT NULL "
                f"AND due_at <= $1 AND {condition} "
                "ORDER BY due_at, run_id LIMIT $2 FOR UPDATE SKIP LOCKED",
                at,
                limit,
                *params,
            )
            taken = []
            for run_id, body in rows:
                try:
                    run = decode_run(body)
                except DecodeError as exc:
                    # Set aside (body kept), never claimed again.
                    log_unreadable_run(run_id, exc)
                    await conn.execute(
                        f"UPDATE {self._s}.wf_runs SET status = 'failed', "
                        "due_at = NULL WHERE run_id = $1",
                        run_id,
                    )
                    continue
                taken.append(claimed(run, owner, lease=lease, at=at))
            for run in taken:
                await self._put(conn, run)
            return taken

        result: list[WorkflowRun] = await self._txn(fn)
        return result

    async def _change(
        self,
        run_id: str,
        change: Callable[[WorkflowRun | None], WorkflowRun | None],
        *,
        notify: str | None = _WAKE,
        then: Callable[[Any], Awaitable[object]] | None = None,
    ) -> bool:
        """One transaction: lock the run, store ``change(run)``, await
        ``then(conn)``; False (nothing written) where ``change`` returns None."""

        async def fn(conn: Any) -> bool:
            new = change(await self._get(conn, run_id, lock=True))
            if new is None:
                return False
            await self._put(conn, new)
            if then is not None:
                await then(conn)
            if notify is not None:
                await self._bump(conn, notify)
            return True

        return bool(await self._txn(fn))

    async def renew(self, run_id: str, fence: int, *, lease: float) -> None:
        at = now()
        await self._change(
            run_id,
            lambda run: renewed(run, run_id, fence, lease=lease, at=at),
            notify=None,
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
        at = now()
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
        at = now()
        await self._change(run_id, lambda run: released(run, run_id, fence, at))

    async def wake(self, run_ids: Sequence[str]) -> None:
        if not run_ids:
            return
        at = now()

        async def fn(conn: Any) -> None:
            for run_id in sorted(set(run_ids)):
                await self._wake(conn, run_id, at)
            await self._bump(conn)

        await self._txn(fn)

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
        at = now()
        s = self._s

        async def drop_events(conn: Any) -> None:
            await conn.execute(f"DELETE FROM {s}.wf_watchers WHERE run_id = $1", run_id)
            await conn.execute(f"DELETE FROM {s}.wf_mailbox WHERE run_id = $1", run_id)

        await self._change(
            run_id,
            lambda run: finished(
                run, run_id, fence, status=status, result=result, error=error, at=at
            ),
            notify=f"{_FINAL}{run_id}",
            then=drop_events,
        )
        self.hub.wake_results([f"{_FINAL}{run_id}"])

    async def request_cancel(self, run_id: str) -> bool:
        at = now()
        return await self._change(run_id, lambda run: cancelling(run, at))

    # ----------------------------------------------------------- events

    async def watch(self, run_id: str, index: int, topic: str, *, fence: int) -> bool:
        at = now()
        s = self._s

        async def fn(conn: Any) -> bool:
            check_held(await self._get(conn, run_id, lock=True), run_id, fence, at)
            body = await conn.fetchval(
                f"SELECT body FROM {s}.wf_steps WHERE run_id = $1 AND idx = $2",
                run_id,
                index,
            )
            if body is not None and decode_step(body).status == "done":
                return True
            if await conn.fetchval(
                f"SELECT 1 FROM {s}.wf_watchers WHERE run_id = $1 AND idx = $2",
                run_id,
                index,
            ):
                return False
            message = await conn.fetchrow(
                f"SELECT seq, payload FROM {s}.wf_mailbox WHERE run_id = $1 AND "
                "topic = $2 ORDER BY seq LIMIT 1 FOR UPDATE",
                run_id,
                topic,
            )
            if message is not None:
                await conn.execute(
                    f"DELETE FROM {s}.wf_mailbox WHERE seq = $1", message["seq"]
                )
                await self._resolve(conn, run_id, index, message["payload"], at)
                await self._bump(conn)
                return True
            await conn.execute(
                f"INSERT INTO {s}.wf_watchers (run_id, idx, topic) VALUES ($1, $2, $3)",
                run_id,
                index,
                topic,
            )
            return False

        return bool(await self._txn(fn))

    async def unwatch(self, run_id: str, index: int, *, fence: int) -> bool:
        at = now()

        async def fn(conn: Any) -> bool:
            check_held(await self._get(conn, run_id, lock=True), run_id, fence, at)
            found = await conn.fetchval(
                f"DELETE FROM {self._s}.wf_watchers WHERE run_id = $1 AND idx = $2 "
                "RETURNING 1",
                run_id,
                index,
            )
            return found is not None

        return bool(await self._txn(fn))

    async def emit(self, topic: str, payload: Any) -> list[str]:
        text = dumps(payload, what="event payload")
        at = now()
        s = self._s

        async def fn(conn: Any) -> list[str]:
            candidates = [
                row[0]
                for row in await conn.fetch(
                    f"SELECT DISTINCT run_id FROM {s}.wf_watchers WHERE topic = $1 "
                    "ORDER BY run_id",
                    topic,
                )
            ]
            if not candidates:
                return []
            # Lock the runs first (the order every writer uses), then take
            # the watchers still there.
            await conn.fetch(
                f"SELECT 1 FROM {s}.wf_runs WHERE run_id = ANY($1::text[]) "
                "ORDER BY run_id FOR UPDATE",
                candidates,
            )
            rows = await conn.fetch(
                f"DELETE FROM {s}.wf_watchers WHERE topic = $1 AND "
                "run_id = ANY($2::text[]) RETURNING run_id, idx",
                topic,
                candidates,
            )
            reached = set()
            for row in rows:
                if await self._resolve(conn, row["run_id"], row["idx"], text, at):
                    reached.add(str(row["run_id"]))
            if reached:
                await self._bump(conn)
            return sorted(reached)

        result: list[str] = await self._txn(fn)
        return result

    async def send(self, run_id: str, topic: str, payload: Any) -> bool:
        text = dumps(payload, what="event payload")
        at = now()
        s = self._s

        async def fn(conn: Any) -> bool:
            check_sendable(await self._get(conn, run_id, lock=True), run_id)
            index = await conn.fetchval(
                f"SELECT idx FROM {s}.wf_watchers WHERE run_id = $1 AND topic = $2 "
                "ORDER BY idx LIMIT 1",
                run_id,
                topic,
            )
            if index is not None:
                await self._resolve(conn, run_id, int(index), text, at)
                await self._bump(conn)
                return True
            await conn.execute(
                f"INSERT INTO {s}.wf_mailbox (run_id, topic, payload) VALUES "
                "($1, $2, $3)",
                run_id,
                topic,
                text,
            )
            return False

        return bool(await self._txn(fn))

    # ----------------------------------------------------------- waiting

    async def next_due(
        self, names: Sequence[str], *, max_versions: Mapping[str, int] | None = None
    ) -> float | None:
        if not names:
            return None
        condition, params = _claimable(names, max_versions, 1)

        async def fn(conn: Any) -> Any:
            return await conn.fetchval(
                f"SELECT MIN(due_at) FROM {self._s}.wf_runs WHERE due_at IS NOT NULL "
                f"AND {condition}",
                *params,
            )

        value = await self.db.run(fn)
        return None if value is None else float(value)

    async def _read_cursor(self) -> int:
        async def fn(conn: Any) -> Any:
            return await conn.fetchval(f"SELECT value FROM {self._s}.wf_cursor")

        return int(await self.db.run(fn) or 0)

    async def _wait_hint(
        self, key: str, check: Callable[[], Awaitable[Any]], timeout: float
    ) -> Any:
        deadline = trio.current_time() + max(timeout, 0.0)
        delay = 0.02
        while True:
            with self.hub.watch_result(key) as woken:
                failure: BrokerUnavailable | None = None
                try:
                    found = await check()
                except BrokerUnavailable as exc:
                    failure, found = exc, None
                if found is not None:
                    return found
                remaining = deadline - trio.current_time()
                if remaining <= 0:
                    if failure is not None:
                        raise failure
                    return None
                if failure is not None:
                    await trio.sleep(min(delay, remaining))
                    delay = min(delay * 2, 0.5)
                    continue
                with trio.move_on_after(min(remaining, self.config.poll_interval)):
                    await woken.wait()

    async def wait_due(self, cursor: int | None, *, timeout: float) -> int:
        if cursor is None:
            return await self._read_cursor()

        async def changed() -> int | None:
            current = await self._read_cursor()
            return current if current != cursor else None

        found = await self._wait_hint(_WAKE, changed, timeout)
        return cursor if found is None else int(found)

    async def wait_run(self, run_id: str, *, timeout: float) -> WorkflowRun | None:
        async def final() -> WorkflowRun | None:
            run = await self.get_run(run_id)
            return run if run is not None and run.is_final else None

        found: WorkflowRun | None = await self._wait_hint(
            f"{_FINAL}{run_id}", final, timeout
        )
        return found
