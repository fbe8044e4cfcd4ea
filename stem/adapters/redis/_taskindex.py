"""Task records listed for operators on Redis (``TaskQuery``).

Records live in one key each, so listing needs an index: a sorted set
``<ns>:tasks`` of task ids scored by ``updated_at``, added to in the same
pipeline as every result write (one more command per batch, not per
record), capped at ``INDEX_CAP`` entries; an entry whose record has expired
is dropped when a listing meets it. Terminal records are also counted per
minute in ``<ns>:finished:<minute>`` hashes (kept two hours) for the
throughput chart: counts of writes, so a record forgotten later stays
counted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from stem._result import TaskResult
from stem._taskquery import (
    SCAN_BOUND,
    bucket_of,
    check_state,
    clamp_limit,
    is_before,
    make_cursor,
    matches,
    parse_cursor,
)
from stem.contracts import TaskPage

from ._conn import Conn, Keys, fmt

#: The most index entries kept (the oldest go first).
INDEX_CAP = 1_000_000
#: Seconds a per-minute counter is kept.
COUNTER_TTL = 7200
_CHUNK = 500


def index_key(keys: Keys) -> str:
    return f"{keys.ns}:tasks"


def counter_key(keys: Keys, minute: float) -> str:
    return f"{keys.ns}:finished:{int(minute)}"


def queue_index(pipe: Any, keys: Keys, results: Sequence[TaskResult]) -> int:
    """Add the index update of ``results`` to ``pipe``; returns how many
    replies it adds (to leave out of the caller's)."""
    if not results:
        return 0
    key = index_key(keys)
    pipe.zadd(key, {r.task_id: r.updated_at for r in results})
    pipe.zremrangebyrank(key, 0, -(INDEX_CAP + 1))
    return 2


async def count_finished(
    conn: Conn, keys: Keys, results: Sequence[TaskResult], stored: Sequence[bool]
) -> None:
    """Count the terminal records just stored, per minute and state."""
    done = [r for r, ok in zip(results, stored, strict=True) if ok and r.is_terminal]
    if not done:
        return

    # One HINCRBY per (minute, state) and one EXPIRE per minute, not two
    # commands per record: a batch of 200 results is a handful of commands.
    counts: dict[str, dict[str, int]] = {}
    for result in done:
        key = counter_key(keys, bucket_of(result.updated_at, 60.0))
        per_state = counts.setdefault(key, {})
        per_state[result.state.value] = per_state.get(result.state.value, 0) + 1

    def fill(pipe: Any) -> None:
        for key, per_state in counts.items():
            for state, count in per_state.items():
                pipe.hincrby(key, state, count)
            pipe.expire(key, COUNTER_TTL)

    await conn.execute(fill, atomic=False)


async def list_tasks(
    conn: Conn,
    keys: Keys,
    get_many: Callable[[Sequence[str]], Awaitable[list[TaskResult | None]]],
    *,
    state: str | None,
    queue: str | None,
    name: str | None,
    limit: int,
    before: str | None,
) -> TaskPage:
    """Walk the index newest first from the cursor, reading records in
    chunks, until a page (plus one) matches or SCAN_BOUND entries were
    looked at."""
    state = check_state(state)
    cursor = parse_cursor(before)
    limit = clamp_limit(limit)
    key = index_key(keys)
    top = "+inf" if cursor is None else fmt(cursor[0])
    found: list[TaskResult] = []
    offset = 0
    while offset < SCAN_BOUND and len(found) <= limit:

        async def fetch(start: int = offset) -> list[Any]:
            ids: list[Any] = await conn.client.zrevrangebyscore(
                key, top, "-inf", start=start, num=_CHUNK
            )
            return ids

        raw = await conn.run(fetch)
        if not raw:
            break
        offset += len(raw)
        ids = [i.decode() if isinstance(i, bytes) else str(i) for i in raw]
        records = await get_many(ids)
        gone = [i for i, r in zip(ids, records, strict=True) if r is None]
        if gone:
            await conn.run(_remover(conn, key, gone))
            offset -= len(gone)
        for record in records:
            if (
                record is not None
                and is_before(record, cursor)
                and matches(record, state=state, queue=queue, name=name)
            ):
                found.append(record)
    found.sort(key=lambda r: (r.updated_at, r.task_id), reverse=True)
    more = len(found) > limit
    found = found[:limit]
    return TaskPage(
        results=tuple(found),
        next_before=make_cursor(found[-1]) if more and found else None,
    )


def _remover(conn: Conn, key: str, members: list[str]) -> Callable[[], Awaitable[Any]]:
    async def remove() -> Any:
        return await conn.client.zrem(key, *members)

    return remove


async def finished_counts(
    conn: Conn, keys: Keys, *, since: float, until: float, bucket: float
) -> dict[float, dict[str, int]]:
    """The per-minute counters from ``since`` to ``until``, summed into
    ``bucket``-second buckets (kept two hours: older minutes count 0)."""
    minutes: list[float] = []
    minute = bucket_of(since, 60.0)
    while minute <= until and len(minutes) < COUNTER_TTL // 60 + 1:
        minutes.append(minute)
        minute += 60.0

    async def send() -> list[Any]:
        pipe = conn.pipeline(atomic=False)
        for start in minutes:
            pipe.hgetall(counter_key(keys, start))
        return list(await pipe.execute())

    counts: dict[float, dict[str, int]] = {}
    for start, fields in zip(minutes, await conn.run(send), strict=True):
        for state, count in (fields or {}).items():
            name = state.decode() if isinstance(state, bytes) else str(state)
            slot = counts.setdefault(bucket_of(max(start, since), bucket), {})
            slot[name] = slot.get(name, 0) + int(count)
    return counts
