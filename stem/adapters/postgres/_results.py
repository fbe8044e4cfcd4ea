"""Results, group counters, one-shot claims and unique reservations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import trio

from stem._clock import now
from stem._codec import decode_result, encode_envelope, encode_result, readable
from stem._envelope import Envelope
from stem._errors import BrokerUnavailable
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

from ._broker import _payloads
from ._config import PostgresConfig
from ._db import Db
from ._notify import Hub

#: The columns of a results row; the last four list it (TaskQuery).
_COLUMNS = "task_id, terminal, body, expires_at, updated_at, state, name, queue"
_UPDATE = (
    "terminal = excluded.terminal, body = excluded.body, "
    "expires_at = excluded.expires_at, updated_at = excluded.updated_at, "
    "state = excluded.state, name = excluded.name, queue = excluded.queue"
)


def _create(s: str, first: int) -> str:
    """Insert where the task has no live record (an expired one is
    replaced); RETURNING names the ones stored. The listing columns are
    parameters ``$first`` to ``$first+3``."""
    a, b, c, d = (f"${first + i}" for i in range(4))
    return f"""
            INSERT INTO {s}.results AS r ({_COLUMNS})
            SELECT * FROM unnest($1::text[], $2::bool[], $3::bytea[],
                                 $4::float8[], {a}::float8[], {b}::text[],
                                 {c}::text[], {d}::text[])
            ON CONFLICT (task_id) DO UPDATE SET {_UPDATE}
            WHERE r.expires_at IS NOT NULL AND r.expires_at <= $5
            RETURNING task_id"""


def _listed(results: Sequence[TaskResult]) -> list[list[Any]]:
    """The listing columns of ``results``, one array per column."""
    return [
        [r.updated_at for r in results],
        [r.state.value for r in results],
        [r.name for r in results],
        [r.queue for r in results],
    ]


class _Sql:
    def __init__(self, s: str) -> None:
        live = "(expires_at IS NULL OR expires_at > $2)"
        self.set_state = f"""
            WITH up AS (
                INSERT INTO {s}.results AS r ({_COLUMNS})
                SELECT * FROM unnest($1::text[], $2::bool[], $3::bytea[],
                                     $4::float8[], $8::float8[], $9::text[],
                                     $10::text[], $11::text[])
                ON CONFLICT (task_id) DO UPDATE SET {_UPDATE}
                WHERE NOT r.terminal
                   OR (r.expires_at IS NOT NULL AND r.expires_at <= $5)
                RETURNING task_id
            ), n AS (
                SELECT count(pg_notify($6, p)) AS c FROM unnest($7::text[]) p
            )
            SELECT up.task_id FROM n, up"""
        # Insert where the task has no live record (an expired one is
        # replaced); RETURNING names the ones stored. Used alone by create()
        # and as the first step of create_and_publish.
        self.create = _create(s, 6)
        self.create_and_publish = f"""
            WITH created AS ({_create(s, 12)}
            ), ins AS (
                INSERT INTO {s}.jobs (queue, task_id, priority, ready_at, body)
                SELECT m.queue, m.task_id, m.priority, m.ready_at, m.body
                FROM unnest($6::text[], $1::text[], $7::int2[], $8::float8[],
                            $9::bytea[]) AS m(queue, task_id, priority, ready_at,
                                              body)
                WHERE m.task_id IN (SELECT task_id FROM created)
                RETURNING queue
            ), qs AS (
                INSERT INTO {s}.queues (name) SELECT DISTINCT queue FROM ins
                ON CONFLICT DO NOTHING
            )
            SELECT created.task_id FROM created,
                (SELECT count(pg_notify($10, p)) FROM unnest($11::text[]) p) n"""
        # With the handoff (PostgresBroker.publish_handoff): each row's id
        # and lease from hand_off, the wake only if a row was not handed.
        self.create_and_publish_handoff = f"""
            WITH created AS ({_create(s, 12)}
            ), ins AS (
                INSERT INTO {s}.jobs (id, queue, task_id, priority, ready_at, body,
                                      locked_until, receipt, delivery_count)
                SELECT h.id, m.queue, m.task_id, m.priority, m.ready_at, m.body,
                       h.locked_until, h.receipt, h.delivery_count
                FROM (
                    SELECT * FROM unnest($6::text[], $1::text[], $7::int2[],
                                         $8::float8[], $9::bytea[])
                        AS u(queue, task_id, priority, ready_at, body)
                    WHERE u.task_id IN (SELECT task_id FROM created)
                    OFFSET 0
                ) m
                CROSS JOIN LATERAL {s}.hand_off(m.queue, m.task_id, m.body,
                                                 m.ready_at, $5::float8) h
                RETURNING queue, receipt
            ), qs AS (
                INSERT INTO {s}.queues (name) SELECT DISTINCT queue FROM ins
                ON CONFLICT DO NOTHING
            )
            SELECT created.task_id FROM created,
                (SELECT count(pg_notify($10, p)) FROM unnest($11::text[]) p
                 WHERE EXISTS (SELECT 1 FROM ins WHERE ins.receipt IS NULL)) n"""
        self.get = f"SELECT body FROM {s}.results WHERE task_id = $1 AND {live}"
        self.get_many = f"""
            SELECT task_id, body FROM {s}.results
            WHERE task_id = ANY($1::text[]) AND {live}"""
        self.forget = f"DELETE FROM {s}.results WHERE task_id = $1"
        self.group_open = f"""
            INSERT INTO {s}.groups (group_id, n, expires_at, forget_at)
            VALUES ($1, 0, NULL, NULL) ON CONFLICT (group_id) DO NOTHING RETURNING 1"""
        self.group_lock = f"""
            SELECT n, expires_at, forget_at FROM {s}.groups
            WHERE group_id = $1 FOR UPDATE"""
        self.group_clear = f"DELETE FROM {s}.group_members WHERE group_id = $1"
        self.group_member = f"""
            INSERT INTO {s}.group_members (group_id, idx, body, expires_at)
            VALUES ($1, $2, $3, NULL)
            ON CONFLICT (group_id, idx) DO UPDATE SET body = excluded.body
            RETURNING (xmax = 0) AS inserted"""
        self.group_set = f"""
            UPDATE {s}.groups SET n = $2, expires_at = $3, forget_at = $4
            WHERE group_id = $1"""
        self.group_head = f"""
            SELECT expires_at, forget_at FROM {s}.groups WHERE group_id = $1"""
        self.group_results = f"""
            SELECT idx, body FROM {s}.group_members WHERE group_id = $1
            ORDER BY idx"""
        self.claim_once = f"""
            INSERT INTO {s}.once AS o (key, owner, expires_at) VALUES ($1, $2, $3)
            ON CONFLICT (key) DO UPDATE
            SET owner = excluded.owner, expires_at = excluded.expires_at
            WHERE o.expires_at IS NOT NULL AND o.expires_at <= $4
            RETURNING 1"""
        self.reserve = f"""
            WITH ins AS (
                INSERT INTO {s}.uniq AS u (key, task_id, expires_at)
                VALUES ($1, $2, $3)
                ON CONFLICT (key) DO UPDATE
                SET task_id = excluded.task_id, expires_at = excluded.expires_at
                WHERE u.expires_at IS NOT NULL AND u.expires_at <= $4
                RETURNING task_id
            )
            SELECT task_id FROM ins
            UNION ALL
            SELECT task_id FROM {s}.uniq
            WHERE key = $1 AND NOT EXISTS (SELECT 1 FROM ins)"""
        self.release = f"DELETE FROM {s}.uniq WHERE key = $1 AND task_id = $2"


def _rounds(results: Sequence[TaskResult]) -> list[list[int]]:
    """Split indexes into rounds in which each task id appears once (an
    upsert may touch a row only once per statement), keeping write order."""
    rounds: list[list[int]] = []
    seen: list[set[str]] = []
    last_round: dict[str, int] = {}
    for index, result in enumerate(results):
        number = last_round.get(result.task_id, -1) + 1
        if number == len(rounds):
            rounds.append([])
            seen.append(set())
        rounds[number].append(index)
        seen[number].add(result.task_id)
        last_round[result.task_id] = number
    return rounds


@attrs.define(eq=False)
class PostgresResults:
    """:class:`stem.contracts.ResultBackend` on Postgres tables."""

    config: PostgresConfig
    db: Db
    hub: Hub
    _sql: _Sql = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._sql = _Sql(self.config.quoted_schema)

    async def set_state(
        self, results: Sequence[TaskResult], *, ttl: float | None = None
    ) -> list[bool]:
        if not results:
            return []
        at = now()
        expires = at + ttl if ttl is not None else None
        bodies = [encode_result(r) for r in results]
        rounds = _rounds(results)
        sql = self._sql.set_state
        channel = self.config.channel("results")
        batches = []
        for indexes in rounds:
            finished = [results[i].task_id for i in indexes if results[i].is_terminal]
            batches.append(
                (
                    indexes,
                    [results[i].task_id for i in indexes],
                    [results[i].is_terminal for i in indexes],
                    [bodies[i] for i in indexes],
                    [expires for _ in indexes],
                    _payloads(list(dict.fromkeys(finished))),
                    _listed([results[i] for i in indexes]),
                )
            )

        async def write(conn: Any) -> list[bool]:
            flags = [False] * len(results)

            async def one_round(batch: Any) -> None:
                indexes, ids, terminal, body, exp, payloads, listed = batch
                rows = await conn.fetch(
                    sql, ids, terminal, body, exp, at, channel, payloads, *listed
                )
                written = {row[0] for row in rows}
                for index, task_id in zip(indexes, ids, strict=True):
                    flags[index] = task_id in written

            if len(batches) == 1:
                await one_round(batches[0])
            else:
                async with conn.transaction():
                    for batch in batches:
                        await one_round(batch)
            return flags

        flags = await self.db.run(write)
        self.hub.wake_results(r.task_id for r in results if r.is_terminal)
        return flags

    async def create(
        self, results: Sequence[TaskResult], *, ttl: float | None = None
    ) -> list[bool]:
        """Store records only where the task has none live: one INSERT ...
        ON CONFLICT, atomic against concurrent creates of the same id."""
        return await self._create(results, ttl=ttl, envelopes=None)

    async def create_and_publish(
        self,
        results: Sequence[TaskResult],
        *,
        ttl: float | None,
        envelopes: Sequence[Envelope],
    ) -> list[bool]:
        """:meth:`create`, and in the same statement insert the messages of
        the records created (see ``CombinedPublish``)."""
        return await self._create(results, ttl=ttl, envelopes=envelopes)

    async def _create(
        self,
        results: Sequence[TaskResult],
        *,
        ttl: float | None,
        envelopes: Sequence[Envelope] | None,
    ) -> list[bool]:
        if not results:
            return []
        at = now()
        expires = at + ttl if ttl is not None else None
        # A task id repeated in the batch is tried once (an upsert may touch
        # a row only once per statement); the later copies are not created.
        first: dict[str, int] = {}
        for index, result in enumerate(results):
            first.setdefault(result.task_id, index)
        chosen = list(first.values())
        ids = [results[i].task_id for i in chosen]
        args: list[Any] = [
            ids,
            [results[i].is_terminal for i in chosen],
            [encode_result(results[i]) for i in chosen],
            [expires for _ in chosen],
            at,
        ]
        listed = _listed([results[i] for i in chosen])
        if envelopes is None:
            sql = self._sql.create
            args += listed
        else:
            sql = self._sql.create_and_publish
            if self.config.handoff:
                sql = self._sql.create_and_publish_handoff
            envs = [envelopes[i] for i in chosen]
            queues = list(dict.fromkeys(env.queue for env in envs))
            args += [
                [env.queue for env in envs],
                [env.priority for env in envs],
                [env.not_before if env.not_before is not None else at for env in envs],
                [encode_envelope(env) for env in envs],
                self.config.channel("jobs"),
                _payloads(queues),
                *listed,
            ]

        async def write(conn: Any) -> set[str]:
            return {row[0] for row in await conn.fetch(sql, *args)}

        created = await self.db.run(write)
        flags = [
            results[i].task_id in created and first[results[i].task_id] == i
            for i in range(len(results))
        ]
        if envelopes is not None and created:
            self.hub.wake_queues({e.queue for e in envelopes if e.id in created})
        return flags

    async def get(self, task_id: str) -> TaskResult | None:
        sql = self._sql.get
        at = now()

        async def fetch(conn: Any) -> Any:
            return await conn.fetchval(sql, task_id, at)

        body = await self.db.run(fetch)
        return decode_result(body) if body is not None else None

    async def get_many(self, task_ids: Sequence[str]) -> list[TaskResult | None]:
        if not task_ids:
            return []
        sql = self._sql.get_many
        at = now()
        ids = list(task_ids)

        async def fetch(conn: Any) -> dict[str, bytes]:
            return {row[0]: row[1] for row in await conn.fetch(sql, ids, at)}

        found = await self.db.run(fetch)
        return [
            decode_result(found[task_id]) if task_id in found else None
            for task_id in ids
        ]

    async def wait(self, task_id: str, *, timeout: float) -> TaskResult | None:
        """Woken by NOTIFY on the results channel (any process), with a
        fallback poll. While the server is unreachable it keeps trying until
        ``timeout``; if the last attempt failed it raises BrokerUnavailable."""
        deadline = trio.current_time() + max(timeout, 0.0)
        delay = 0.02
        while True:
            with self.hub.watch_result(task_id) as woken:
                failure: BrokerUnavailable | None = None
                try:
                    result = await self.get(task_id)
                except BrokerUnavailable as exc:
                    failure, result = exc, None
                if result is not None and result.is_terminal:
                    return result
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

    async def forget(self, task_id: str) -> None:
        sql = self._sql.forget

        async def delete(conn: Any) -> None:
            await conn.execute(sql, task_id)

        await self.db.run(delete)

    async def group_add(
        self, group_id: str, index: int, result: TaskResult, *, ttl: float | None = None
    ) -> int:
        """One transaction holding the group's row lock: judge its record
        (stem._groupstate), upsert the member and count it once."""
        sql = self._sql
        at = now()
        expires, forget = group_deadlines(at, ttl)
        body = encode_result(result)

        async def add(conn: Any) -> int:
            async with conn.transaction():
                opened = await conn.fetchval(sql.group_open, group_id)
                row = await conn.fetchrow(sql.group_lock, group_id)
                phase = (
                    "gone"
                    if opened
                    else group_phase(row["expires_at"], row["forget_at"], at)
                )
                if phase == "expired":
                    raise expired_error(group_id, row["expires_at"], at)
                count = 0 if phase == "gone" else int(row["n"])
                if phase == "gone":
                    # Leftovers of a forgotten group the reaper has not reached.
                    await conn.execute(sql.group_clear, group_id)
                if await conn.fetchval(sql.group_member, group_id, index, body):
                    count += 1
                await conn.execute(sql.group_set, group_id, count, expires, forget)
                return count

        return await self.db.run(add)

    async def group_results(self, group_id: str) -> dict[int, TaskResult]:
        sql = self._sql
        at = now()

        async def fetch(conn: Any) -> list[Any]:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                head = await conn.fetchrow(sql.group_head, group_id)
                if head is None or (
                    group_phase(head["expires_at"], head["forget_at"], at) != "live"
                ):
                    return []
                rows: list[Any] = await conn.fetch(sql.group_results, group_id)
                return rows

        return {idx: decode_result(body) for idx, body in await self.db.run(fetch)}

    async def claim_once(
        self, key: str, owner: str, *, ttl: float | None = None
    ) -> bool:
        sql = self._sql.claim_once
        at = now()
        expires = at + ttl if ttl is not None else None

        async def claim(conn: Any) -> bool:
            return await conn.fetchval(sql, key, owner, expires, at) is not None

        return await self.db.run(claim)

    async def reserve_unique(self, key: str, task_id: str, *, ttl: float | None) -> str:
        sql = self._sql.reserve
        at = now()
        expires = at + ttl if ttl is not None else None

        async def reserve(conn: Any) -> str | None:
            for _ in range(5):
                # None only when a concurrent reservation committed between
                # our snapshot and our insert: look again.
                holder: str | None = await conn.fetchval(sql, key, task_id, expires, at)
                if holder is not None:
                    return holder
            return None

        holder = await self.db.run(reserve)
        if holder is None:
            raise BrokerUnavailable(f"could not reserve unique key {key!r}")
        return holder

    async def release_unique(self, key: str, task_id: str) -> None:
        sql = self._sql.release

        async def release(conn: Any) -> None:
            await conn.execute(sql, key, task_id)

        await self.db.run(release)

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
        s = self.config.quoted_schema
        args: list[Any] = [now()]
        where = ["(expires_at IS NULL OR expires_at > $1)", "updated_at IS NOT NULL"]
        if cursor is not None:
            args += [cursor[0], cursor[1]]
            where.append(f"(updated_at, task_id) < (${len(args) - 1}, ${len(args)})")
        inner = (
            f"SELECT task_id, body, state, queue, name, updated_at FROM {s}.results "
            f"WHERE {' AND '.join(where)} ORDER BY updated_at DESC, task_id DESC"
        )
        outer: list[str] = []
        if state is not None or queue is not None or name is not None:
            inner += f" LIMIT {SCAN_BOUND}"
            if state is not None:
                args.append(state)
                outer.append(f"state = ${len(args)}")
            if queue is not None:
                args.append(queue)
                outer.append(f"queue = ${len(args)}")
            if name is not None:
                args.append(name)
                outer.append(f"name = ${len(args)}")
        args.append(limit + 1)
        if outer:
            # The scan is bounded by the inner LIMIT; the filter applies to it.
            sql = (
                f"SELECT body FROM ({inner}) AS recent WHERE {' AND '.join(outer)} "
                f"ORDER BY updated_at DESC, task_id DESC LIMIT ${len(args)}"
            )
        else:
            # One ordered index scan (a wrapping subquery made the planner
            # sort every live row).
            sql = inner.replace(
                "SELECT task_id, body, state, queue, name, updated_at", "SELECT body", 1
            )
            sql += f" LIMIT ${len(args)}"

        async def fetch(conn: Any) -> list[Any]:
            rows: list[Any] = await conn.fetch(sql, *args)
            return rows

        rows = await self.db.run(fetch)
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
        s = self.config.quoted_schema
        sql = (
            f"SELECT floor(updated_at / $1), state, count(*) FROM {s}.results "
            "WHERE updated_at >= $2 AND terminal "
            "AND (expires_at IS NULL OR expires_at > $3) GROUP BY 1, 2"
        )
        at = now()

        async def fetch(conn: Any) -> list[Any]:
            rows: list[Any] = await conn.fetch(sql, bucket, since, at)
            return rows

        counts: dict[float, dict[str, int]] = {}
        for slot, state, count in await self.db.run(fetch):
            counts.setdefault(float(slot) * bucket, {})[str(state)] = int(count)
        return counts
