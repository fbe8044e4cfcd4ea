"""Workflow runs, steps, timers, events and leases on Redis.

Every key shares the hash tag ``{<ns>:wf}`` (one Redis Cluster slot):

* ``runs`` hash: run id -> the run as JSON; ``due`` sorted set: run id ->
  ``due_at`` of active runs; ``created`` sorted set: run id -> created_at.
* ``steps:<run>`` hash: step index -> the step as JSON.
* ``watch:<topic>`` hash: ``<run>\\n<index>`` -> 1, ``watching:<run>`` hash:
  index -> topic; ``mbox:<run>:<topic>`` list: payloads sent before a wait.
* ``cursor``: the change counter; a change also PUBLISHes on
  ``<ns>@<db>:done:__wf__`` (and ``<ns>@<db>:done:__wfrun__<run>`` when a run ends), so
  ``wait_due`` and ``wait_run`` are woken through the backend's pub/sub hub.

Multi-key changes are optimistic transactions (WATCH the keys read, MULTI,
EXEC, retry on conflict), all inside one bridge crossing. A run's record is
watched through its own counter ``rv:<run>``, which every write of the run
increments, never through the shared ``runs`` hash: a transaction conflicts
only with writes of the runs it read (watching the hash made every step write
of one run retry on every write of any other).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any

import attrs
import redis.exceptions as rexc
import trio

from stem._clock import now
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
    cancelling,
    check_final,
    check_held,
    check_sendable,
    claimed,
    drivable,
    finished,
    is_due,
    matches,
    released,
    renewed,
    resolvable,
    resolved,
    run_filters,
    stepped,
    suspended,
    woken,
)
from stem.contracts import WORKFLOW_ACTIVE, WorkflowRun, WorkflowStep

from ._conn import Conn, Keys
from ._hub import Hub

MAX_NAP = 2.0
_WAKE = "__wf__"
_FINAL = "__wfrun__"


def _cmd(name: str, *args: Any) -> Callable[[Any], Any]:
    """A write to queue on a MULTI pipeline: ``_cmd("hdel", key, field)``."""
    return lambda pipe: getattr(pipe, name)(*args)


@attrs.define(eq=False)
class RedisWorkflows:
    """:class:`stem.contracts.WorkflowStore` on Redis."""

    conn: Conn
    keys: Keys
    hub: Hub

    # ----------------------------------------------------------- keys

    @property
    def _tag(self) -> str:
        return f"{self.keys.ns}:{{{self.keys.ns}:wf}}"

    @property
    def _runs(self) -> str:
        return f"{self._tag}:runs"

    @property
    def _due(self) -> str:
        return f"{self._tag}:due"

    @property
    def _created(self) -> str:
        return f"{self._tag}:created"

    @property
    def _cursor(self) -> str:
        return f"{self._tag}:cursor"

    def _rv(self, run_id: str | bytes) -> bytes:
        """The change counter of one run (a member read from ``due`` may be
        any bytes, so the key is built as bytes)."""
        member = run_id.encode() if isinstance(run_id, str) else run_id
        return f"{self._tag}:rv:".encode() + member

    def _steps(self, run_id: str) -> str:
        return f"{self._tag}:steps:{run_id}"

    def _watch(self, topic: str) -> str:
        return f"{self._tag}:watch:{topic}"

    def _watching(self, run_id: str) -> str:
        return f"{self._tag}:watching:{run_id}"

    def _mbox(self, run_id: str, topic: str) -> str:
        return f"{self._tag}:mbox:{run_id}:{topic}"

    def _mboxes(self, run_id: str) -> str:
        return f"{self._tag}:mboxes:{run_id}"

    # ----------------------------------------------------------- plumbing

    async def _txn(
        self,
        watch: Sequence[str | bytes],
        body: Callable[[Any], Awaitable[tuple[Any, list[Callable[[Any], Any]]]]],
    ) -> Any:
        """WATCH ``watch``; ``body(pipe)`` reads and returns (result, writes);
        the writes run in MULTI/EXEC; repeated on a conflicting change."""

        async def attempt() -> Any:
            async with self.conn.node_client(self._tag).pipeline(
                transaction=True
            ) as typed:
                pipe: Any = typed
                while True:
                    try:
                        await pipe.watch(*watch)
                        result, writes = await body(pipe)
                        if not writes:
                            await pipe.unwatch()
                            return result
                        pipe.multi()
                        for write in writes:
                            write(pipe)
                        await pipe.execute()
                        return result
                    except rexc.WatchError:
                        continue

        return await self.conn.run(attempt)

    def _put(self, run: WorkflowRun) -> list[Callable[[Any], Any]]:
        body = encode_run(attrs.evolve(run, history=()))
        writes: list[Callable[[Any], Any]] = [
            lambda p: p.hset(self._runs, run.run_id, body),
            lambda p: p.incr(self._rv(run.run_id)),
        ]
        if run.status in WORKFLOW_ACTIVE and run.due_at is not None:
            due = run.due_at
            writes.append(lambda p: p.zadd(self._due, {run.run_id: due}))
        else:
            writes.append(lambda p: p.zrem(self._due, run.run_id))
        return writes

    def _bump(self) -> list[Callable[[Any], Any]]:
        channel = self.keys.done(_WAKE)
        return [
            lambda p: p.incr(self._cursor),
            lambda p: p.publish(channel, b""),
        ]

    async def _get(self, pipe: Any, run_id: str) -> WorkflowRun | None:
        body = await pipe.hget(self._runs, run_id)
        return None if body is None else decode_run(body)

    # ----------------------------------------------------------- runs

    async def create_run(self, run: WorkflowRun) -> bool:
        encode_run(run)

        async def body(pipe: Any) -> tuple[Any, list[Callable[[Any], Any]]]:
            if await pipe.hexists(self._runs, run.run_id):
                return False, []
            created = run.created_at
            writes = self._put(run)
            writes.append(lambda p: p.zadd(self._created, {run.run_id: created}))
            return True, writes + self._bump()

        return bool(await self._txn([self._rv(run.run_id)], body))

    async def get_run(self, run_id: str) -> WorkflowRun | None:
        body = await self.conn.run(lambda: self.conn.client.hget(self._runs, run_id))
        return None if body is None else decode_run(body)

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
        found: list[WorkflowRun] = []
        skipped = 0
        start = 0
        page = 500
        client = self.conn.client
        while len(found) < limit:
            ids: list[bytes] = await self.conn.run(
                partial(client.zrange, self._created, start, start + page - 1)
            )
            if not ids:
                break
            start += page
            bodies = await self.conn.run(partial(client.hmget, self._runs, ids))
            for body in bodies:
                run = None if body is None else readable_run(body)
                if run is None or not matches(run, filters):
                    continue
                if skipped < offset:
                    skipped += 1
                    continue
                found.append(run)
                if len(found) >= limit:
                    break
        return found

    # ----------------------------------------------------------- steps

    async def save_step(self, step: WorkflowStep, *, fence: int) -> None:
        body = encode_step(step)
        at = now()
        key = self._steps(step.run_id)
        await self._update(
            step.run_id,
            lambda run: stepped(run, step.run_id, fence, at),
            extra=lambda run: [lambda p: p.hset(key, str(step.index), body)],
            bump=False,
        )

    async def get_step(self, run_id: str, index: int) -> WorkflowStep | None:
        body = await self.conn.run(
            lambda: self.conn.client.hget(self._steps(run_id), str(index))
        )
        return None if body is None else decode_step(body)

    async def list_steps(self, run_id: str) -> list[WorkflowStep]:
        found = await self.conn.run(
            lambda: self.conn.client.hgetall(self._steps(run_id))
        )
        steps = [decode_step(body) for body in found.values()]
        steps.sort(key=lambda s: s.index)
        return steps

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
        wanted = set(names)

        async def body(pipe: Any) -> tuple[Any, list[Callable[[Any], Any]]]:
            ids = await pipe.zrangebyscore(self._due, "-inf", at)
            taken: list[WorkflowRun] = []
            writes: list[Callable[[Any], Any]] = []
            if ids:
                await pipe.watch(*(self._rv(i) for i in ids))
                for run_id, raw in zip(
                    ids, await pipe.hmget(self._runs, ids), strict=True
                ):
                    if raw is None:
                        continue
                    try:
                        run = decode_run(raw)
                    except DecodeError as exc:
                        # Set aside (body kept), never claimed again.
                        log_unreadable_run(run_id, exc)
                        writes.append(partial(_unschedule, self._due, run_id))
                        continue
                    if not is_due(run, wanted, at, max_versions):
                        continue
                    taken.append(claimed(run, owner, lease=lease, at=at))
                    writes += self._put(taken[-1])
                    if len(taken) >= limit:
                        break
            return taken, writes

        result: list[WorkflowRun] = await self._txn([self._due], body)
        return result

    async def _update(
        self,
        run_id: str,
        change: Callable[[WorkflowRun | None], WorkflowRun | None],
        *,
        extra: Callable[[WorkflowRun], list[Callable[[Any], Any]]] | None = None,
        bump: bool = True,
    ) -> bool:
        async def body(pipe: Any) -> tuple[Any, list[Callable[[Any], Any]]]:
            new = change(await self._get(pipe, run_id))
            if new is None:
                return False, []
            writes = self._put(new)
            if extra is not None:
                writes += extra(new)
            return True, writes + (self._bump() if bump else [])

        return bool(await self._txn([self._rv(run_id)], body))

    async def renew(self, run_id: str, fence: int, *, lease: float) -> None:
        at = now()
        await self._update(
            run_id,
            lambda run: renewed(run, run_id, fence, lease=lease, at=at),
            bump=False,
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
        await self._update(
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
        await self._update(run_id, lambda run: released(run, run_id, fence, at))

    async def wake(self, run_ids: Sequence[str]) -> None:
        if not run_ids:
            return
        at = now()

        async def body(pipe: Any) -> tuple[Any, list[Callable[[Any], Any]]]:
            writes: list[Callable[[Any], Any]] = []
            for run_id in sorted(set(run_ids)):
                run = woken(await self._get(pipe, run_id), at)
                if run is not None:
                    writes += self._put(run)
            return None, writes + self._bump() if writes else []

        await self._txn([self._rv(r) for r in sorted(set(run_ids))], body)

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
        channel = self.keys.done(f"{_FINAL}{run_id}")
        await self._update(
            run_id,
            lambda run: finished(
                run, run_id, fence, status=status, result=result, error=error, at=at
            ),
            extra=lambda run: [lambda p: p.publish(channel, b"")],
            bump=False,
        )
        await self._drop_events(run_id)
        self.hub.wake_result(f"{_FINAL}{run_id}")

    async def _drop_events(self, run_id: str) -> None:
        async def body(pipe: Any) -> tuple[Any, list[Callable[[Any], Any]]]:
            watching = await pipe.hgetall(self._watching(run_id))
            writes: list[Callable[[Any], Any]] = []
            for index, topic in watching.items():
                member = f"{run_id}\n{index.decode()}"
                key = self._watch(topic.decode())
                writes.append(_cmd("hdel", key, member))
            writes.append(lambda p: p.delete(self._watching(run_id)))
            for topic in await pipe.smembers(self._mboxes(run_id)):
                key = self._mbox(run_id, topic.decode())
                writes.append(_cmd("delete", key))
            writes.append(lambda p: p.delete(self._mboxes(run_id)))
            return None, writes

        await self._txn([self._watching(run_id), self._mboxes(run_id)], body)

    async def request_cancel(self, run_id: str) -> bool:
        at = now()
        return await self._update(run_id, lambda run: cancelling(run, at))

    # ----------------------------------------------------------- events

    async def _resolve_writes(
        self, pipe: Any, run_id: str, index: int, payload: str, at: float
    ) -> list[Callable[[Any], Any]] | None:
        """The writes resolving watcher ``(run_id, index)``; None (the
        watcher is only dropped, see :meth:`_drop_watcher`) when its run is no
        longer active."""
        run = await self._get(pipe, run_id)
        if not resolvable(run):
            return None
        writes: list[Callable[[Any], Any]] = []
        raw = await pipe.hget(self._steps(run_id), str(index))
        if raw is not None:
            body = encode_step(resolved(decode_step(raw), payload, at))
            writes.append(lambda p: p.hset(self._steps(run_id), str(index), body))
        writes += await self._drop_watcher(pipe, run_id, index)
        woke = woken(run, at)
        if woke is not None:
            writes += self._put(woke)
        return writes

    async def _drop_watcher(
        self, pipe: Any, run_id: str, index: int
    ) -> list[Callable[[Any], Any]]:
        topic = await pipe.hget(self._watching(run_id), str(index))
        if topic is None:
            return []
        key = self._watch(topic.decode())
        return [
            lambda p: p.hdel(key, f"{run_id}\n{index}"),
            lambda p: p.hdel(self._watching(run_id), str(index)),
        ]

    async def watch(self, run_id: str, index: int, topic: str, *, fence: int) -> bool:
        at = now()
        mbox = self._mbox(run_id, topic)

        async def body(pipe: Any) -> tuple[Any, list[Callable[[Any], Any]]]:
            check_held(await self._get(pipe, run_id), run_id, fence, at)
            raw = await pipe.hget(self._steps(run_id), str(index))
            if raw is not None and decode_step(raw).status == "done":
                return True, []
            if await pipe.hexists(self._watching(run_id), str(index)):
                return False, []
            first = await pipe.lindex(mbox, 0)
            if first is not None:
                writes = await self._resolve_writes(
                    pipe, run_id, index, first.decode(), at
                )
                assert writes is not None  # the run is active: it is held
                writes.append(lambda p: p.lpop(mbox))
                return True, writes + self._bump()
            return False, [
                lambda p: p.hset(self._watch(topic), f"{run_id}\n{index}", b"1"),
                lambda p: p.hset(self._watching(run_id), str(index), topic),
            ]

        keys: list[str | bytes] = [
            self._rv(run_id),
            self._steps(run_id),
            self._watching(run_id),
            mbox,
        ]
        return bool(await self._txn(keys, body))

    async def unwatch(self, run_id: str, index: int, *, fence: int) -> bool:
        at = now()

        async def body(pipe: Any) -> tuple[Any, list[Callable[[Any], Any]]]:
            check_held(await self._get(pipe, run_id), run_id, fence, at)
            writes = await self._drop_watcher(pipe, run_id, index)
            return bool(writes), writes

        return bool(await self._txn([self._rv(run_id), self._watching(run_id)], body))

    async def emit(self, topic: str, payload: Any) -> list[str]:
        text = dumps(payload, what="event payload")
        at = now()
        key = self._watch(topic)

        async def body(pipe: Any) -> tuple[Any, list[Callable[[Any], Any]]]:
            members = await pipe.hkeys(key)
            if not members:
                return [], []
            targets = []
            for member in members:
                run_id, _, index = member.decode().partition("\n")
                targets.append((run_id, int(index)))
            await pipe.watch(
                *{self._rv(r) for r, _ in targets},
                *{self._steps(r) for r, _ in targets},
                *{self._watching(r) for r, _ in targets},
            )
            writes: list[Callable[[Any], Any]] = []
            reached: set[str] = set()
            for run_id, index in targets:
                resolving = await self._resolve_writes(pipe, run_id, index, text, at)
                if resolving is None:
                    writes += await self._drop_watcher(pipe, run_id, index)
                else:
                    writes += resolving
                    reached.add(run_id)
            writes.append(lambda p: p.delete(key))
            return sorted(reached), writes + (self._bump() if reached else [])

        result: list[str] = await self._txn([key], body)
        return result

    async def send(self, run_id: str, topic: str, payload: Any) -> bool:
        text = dumps(payload, what="event payload")
        at = now()
        mbox = self._mbox(run_id, topic)

        async def body(pipe: Any) -> tuple[Any, list[Callable[[Any], Any]]]:
            check_sendable(await self._get(pipe, run_id), run_id)
            watching = await pipe.hgetall(self._watching(run_id))
            indexes = sorted(int(i) for i, t in watching.items() if t.decode() == topic)
            if indexes:
                writes = await self._resolve_writes(pipe, run_id, indexes[0], text, at)
                assert writes is not None  # checked active above
                return True, writes + self._bump()
            return False, [
                lambda p: p.rpush(mbox, text),
                lambda p: p.sadd(self._mboxes(run_id), topic),
            ]

        keys: list[str | bytes] = [
            self._rv(run_id),
            self._steps(run_id),
            self._watching(run_id),
        ]
        return bool(await self._txn(keys, body))

    # ----------------------------------------------------------- waiting

    async def next_due(
        self, names: Sequence[str], *, max_versions: Mapping[str, int] | None = None
    ) -> float | None:
        wanted = set(names)
        client = self.conn.client
        start = 0
        page = 200
        while True:
            fetch: Any = partial(
                client.zrange, self._due, start, start + page - 1, withscores=True
            )
            entries: list[tuple[bytes, float]] = await self.conn.run(fetch)
            if not entries:
                return None
            start += page
            members = [member for member, _ in entries]
            bodies = await self.conn.run(partial(client.hmget, self._runs, members))
            for (_, score), body in zip(entries, bodies, strict=True):
                run = None if body is None else readable_run(body)
                if run is not None and drivable(run, wanted, max_versions):
                    return float(score)

    async def _read_cursor(self) -> int:
        value = await self.conn.run(lambda: self.conn.client.get(self._cursor))
        return int(value or 0)

    async def _wait_hint(
        self, key: str, check: Callable[[], Awaitable[Any]], timeout: float
    ) -> Any:
        """Call ``check()`` until it returns something (not None), woken by
        the hub on ``key`` (re-checking every MAX_NAP s), or None at timeout."""
        deadline = trio.current_time() + max(timeout, 0.0)
        channel = self.keys.done(key)
        await self.hub.ensure(channel)
        try:
            while True:
                event = trio.Event()
                Hub.add(self.hub.result_waiters, key, event)
                try:
                    found = await check()
                    if found is not None:
                        return found
                    remaining = deadline - trio.current_time()
                    if remaining <= 0:
                        return None
                    with trio.move_on_after(min(remaining, MAX_NAP)):
                        await event.wait()
                finally:
                    Hub.discard(self.hub.result_waiters, key, event)
        finally:
            await self.hub.release(channel)

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


def _unschedule(due: str, run_id: Any, pipe: Any) -> Any:
    return pipe.zrem(due, run_id)
