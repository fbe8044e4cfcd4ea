"""Results, group counters, one-shot claims and unique reservations.

A result is one string key ``<flag><expires>\\n<json>``: the flag is ``T`` for a
terminal record (final) and ``N`` otherwise; ``expires`` (client epoch seconds,
empty for never) decides when the record counts as forgotten, so ``MockClock``
drives TTLs; a ``PX`` of ttl + 1 s frees the memory on the server. A terminal
write PUBLISHes on ``<ns>@<db>:done:<task id>``; ``wait`` subscribes to that channel
(through the backend's one pub/sub connection) before it reads the key, so a
write from any process wakes it. A safety re-read every ``MAX_NAP`` seconds
covers a wake lost to a reconnect.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import trio

from stem._clock import now
from stem._codec import decode_result, encode_result
from stem._errors import DecodeError
from stem._groupstate import expired_error, group_deadlines, group_phase
from stem._result import TaskResult
from stem.contracts import TaskPage

from ._conn import Conn, Keys, evalsha, fmt, px, slot_groups
from ._hub import Hub
from ._taskindex import count_finished, finished_counts, list_tasks, queue_index

MAX_NAP = 2.0


#: records per set_state script call
_CHUNK = 200
#: fields of a group hash that are not members (GROUP_ADD in _scripts.py)
_GROUP_FIELDS = (b"~e", b"~f")


def parse_result(value: Any, at: float) -> TaskResult | None:
    if value is None:
        return None
    head, _, body = value.partition(b"\n")
    expires = head[1:]
    try:
        gone = bool(expires) and float(expires) <= at
    except ValueError:
        raise DecodeError(f"stored result has a bad expiry {expires[:40]!r}") from None
    if gone:
        return None
    return decode_result(body)


def _in_order(
    count: int, order: Sequence[Sequence[int]], replies: Sequence[Any]
) -> list[bool]:
    """The flags of script replies (one list of flags per call, the call
    storing the records ``order[i]``) in the order of the records."""
    flags = [False] * count
    for indexes, reply in zip(order, replies, strict=True):
        for index, flag in zip(indexes, reply, strict=True):
            flags[index] = bool(int(flag))
    return flags


def _opt_time(value: bytes | str | None) -> float | None:
    """A client time stored in a hash field (empty, missing or unreadable:
    none, as the GROUP_ADD script reads it)."""
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


def lease_args(
    op: str, owner: str, ttl: float | None, *, at: float | None = None
) -> list[str]:
    at = now() if at is None else at
    expires = fmt(at + ttl) if ttl is not None else ""
    return [op, owner, fmt(at), expires, px(ttl)]


@attrs.define(eq=False)
class RedisResults:
    """:class:`stem.contracts.ResultBackend` on Redis."""

    conn: Conn
    keys: Keys
    hub: Hub

    async def set_state(
        self, results: Sequence[TaskResult], *, ttl: float | None = None
    ) -> list[bool]:
        """Store the batch in one round trip (one script call per chunk of
        records; each record's final-state check is atomic inside it); wakes
        waiters everywhere."""
        if not results:
            return []

        def fill(pipe: Any) -> list[list[int]]:
            order = self.queue_set_state(pipe, results, ttl=ttl)
            queue_index(pipe, self.keys, results)
            return order

        order, replies = await self.conn.execute(fill, atomic=False)
        replies = replies[: len(order)]
        flags = self.set_state_done(results, replies, order)
        await count_finished(self.conn, self.keys, results, flags)
        return flags

    async def create(
        self, results: Sequence[TaskResult], *, ttl: float | None = None
    ) -> list[bool]:
        """Store records only where the task has none live: one script call
        per chunk, each record's check and write atomic inside it."""
        if not results:
            return []
        at = now()
        expires = fmt(at + ttl) if ttl is not None else ""
        expiry = px(ttl)

        keys = [self.keys.result(r.task_id) for r in results]
        order = slot_groups(keys, cluster=self.conn.cluster, size=_CHUNK)

        def fill(pipe: Any) -> None:
            for chunk in order:
                args: list[Any] = [fmt(at), expires, expiry]
                for index in chunk:
                    result = results[index]
                    args += ["1" if result.is_terminal else "0", encode_result(result)]
                evalsha(pipe, "create_many", [keys[i] for i in chunk], args)
            queue_index(pipe, self.keys, results)

        _, replies = await self.conn.execute(fill, atomic=False)
        flags = _in_order(len(results), order, replies[: len(order)])
        await count_finished(self.conn, self.keys, results, flags)
        for result, stored in zip(results, flags, strict=True):
            if stored and result.is_terminal:
                self.hub.wake_result(result.task_id)
        return flags

    def queue_set_state(
        self, pipe: Any, results: Sequence[TaskResult], *, ttl: float | None
    ) -> list[list[int]]:
        """Add the commands storing ``results`` to ``pipe``; returns the
        indexes of the results each script call stores (one reply per call:
        pass both to :meth:`set_state_done`)."""
        at = now()
        expires = fmt(at + ttl) if ttl is not None else ""
        expiry = px(ttl)
        keys = self.keys
        names = [keys.result(r.task_id) for r in results]
        # One script call per chunk (not one per record): packing a command
        # costs far more in redis-py than one more argument does. On a
        # cluster a chunk holds the records of one slot only.
        order = slot_groups(names, cluster=self.conn.cluster, size=_CHUNK)
        for chunk in order:
            args: list[Any] = [fmt(at), expires, expiry]
            for index in chunk:
                result = results[index]
                args += [
                    "1" if result.is_terminal else "0",
                    encode_result(result),
                    keys.done(result.task_id),
                ]
            evalsha(pipe, "set_state_many", [names[i] for i in chunk], args)
        return order

    def set_state_done(
        self,
        results: Sequence[TaskResult],
        replies: Sequence[Any],
        order: Sequence[Sequence[int]],
    ) -> list[bool]:
        """Flags from the replies of :meth:`queue_set_state` (in the order of
        ``results``); wakes waiters."""
        flags = _in_order(len(results), order, replies)
        for result, stored in zip(results, flags, strict=True):
            if stored and result.is_terminal:
                self.hub.wake_result(result.task_id)
        return flags

    async def get(self, task_id: str) -> TaskResult | None:
        key = self.keys.result(task_id)
        value = await self.conn.run(lambda: self.conn.client.get(key))
        return parse_result(value, now())

    async def get_many(self, task_ids: Sequence[str]) -> list[TaskResult | None]:
        if not task_ids:
            return []
        keys = [self.keys.result(task_id) for task_id in task_ids]

        async def send() -> list[Any]:
            pipe = self.conn.pipeline(atomic=False)
            for key in keys:
                pipe.get(key)
            replies: list[Any] = await pipe.execute()
            return replies

        values = await self.conn.run(send)
        at = now()
        return [parse_result(value, at) for value in values]

    async def wait(self, task_id: str, *, timeout: float) -> TaskResult | None:
        """The terminal result, waiting up to ``timeout`` seconds; woken by a
        terminal write from any process sharing the Redis namespace."""
        deadline = trio.current_time() + max(timeout, 0.0)
        channel = self.keys.done(task_id)
        await self.hub.ensure(channel)
        try:
            while True:
                event = trio.Event()
                self.hub.add(self.hub.result_waiters, task_id, event)
                try:
                    result = await self.get(task_id)
                    if result is not None and result.is_terminal:
                        return result
                    remaining = deadline - trio.current_time()
                    if remaining <= 0:
                        return None
                    with trio.move_on_after(min(remaining, MAX_NAP)):
                        await event.wait()
                finally:
                    self.hub.discard(self.hub.result_waiters, task_id, event)
        finally:
            await self.hub.release(channel)

    async def forget(self, task_id: str) -> None:
        key = self.keys.result(task_id)
        await self.conn.run(lambda: self.conn.client.delete(key))

    async def group_add(
        self, group_id: str, index: int, result: TaskResult, *, ttl: float | None = None
    ) -> int:
        """One script: judge the group's expiry by the client's clock (stored
        in the hash, stem._groupstate), HSET the member, count; a repeated
        index counts once (the last write wins). The server-side PEXPIRE only
        frees the memory after the forget time."""
        at = now()
        expires, forget = group_deadlines(at, ttl)
        count, expired_at = await self.conn.script(
            "group_add",
            [self.keys.group(group_id)],
            [
                str(index),
                encode_result(result),
                fmt(at),
                "" if expires is None else fmt(expires),
                "" if forget is None else fmt(forget),
                px(None if ttl is None else 2 * ttl),
            ],
        )
        if int(count) < 0:
            raise expired_error(group_id, _opt_time(expired_at), at)
        return int(count)

    async def group_results(self, group_id: str) -> dict[int, TaskResult]:
        key = self.keys.group(group_id)
        values = await self.conn.run(lambda: self.conn.client.hgetall(key))
        phase = group_phase(
            _opt_time(values.get(b"~e")), _opt_time(values.get(b"~f")), now()
        )
        if phase != "live":
            return {}
        return {
            int(index): decode_result(body)
            for index, body in values.items()
            if index not in _GROUP_FIELDS
        }

    async def claim_once(
        self, key: str, owner: str, *, ttl: float | None = None
    ) -> bool:
        reply = await self.conn.script(
            "lease", [self.keys.once(key)], lease_args("once", owner, ttl)
        )
        return bool(int(reply[0]))

    async def reserve_unique(self, key: str, task_id: str, *, ttl: float | None) -> str:
        reply = await self.conn.script(
            "lease", [self.keys.unique(key)], lease_args("once", task_id, ttl)
        )
        holder = reply[1]
        return holder.decode() if isinstance(holder, bytes) else str(holder)

    async def release_unique(self, key: str, task_id: str) -> None:
        await self.conn.script(
            "lease", [self.keys.unique(key)], lease_args("release", task_id, None)
        )

    # -- listing (stem.contracts.TaskQuery): see _taskindex.py ---------------

    async def list_tasks(
        self,
        *,
        state: str | None = None,
        queue: str | None = None,
        name: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> TaskPage:
        return await list_tasks(
            self.conn,
            self.keys,
            self.get_many,
            state=state,
            queue=queue,
            name=name,
            limit=limit,
            before=before,
        )

    async def finished_counts(
        self, *, since: float, bucket: float = 60.0
    ) -> dict[float, dict[str, int]]:
        return await finished_counts(
            self.conn, self.keys, since=since, until=now(), bucket=bucket
        )
