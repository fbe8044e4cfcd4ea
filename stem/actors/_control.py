"""Remote control over the broker's broadcast channel.

Worker side: one :class:`Control` actor per worker subscribes to
``backend.broker.subscribe()`` and answers requests addressed to every worker
or to it by id. Client side: :class:`RemoteControl` (``client.control``)
broadcasts a request with a fresh ``request_id`` and collects the replies
(broadcast back with the same id) from every live worker until each worker
with a live heartbeat answered or the timeout passed.

Wire format (JSON objects, under the 7,900-byte broadcast limit)::

    {"kind": "stem.control", "request_id": ..., "command": "ping",
     "args": {...}, "destination": null | [worker ids]}
    {"kind": "stem.control.reply", "request_id": ..., "worker_id": ...,
     "command": "ping", "ok": true, "data": {...}, "error": null}

Commands: ``ping``, ``stats``, ``active``, ``revoke`` (``task_id``,
``terminate``, ``reason``), ``pause`` / ``resume`` (``queue``), ``shutdown``
(``mode``: warm, soft, hard).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import trio

from stem._clock import now
from stem._codec import dumps
from stem._errors import BrokerUnavailable
from stem._ids import new_id
from stem._signals import ControlEvent

if TYPE_CHECKING:
    from stem.contracts import Backend

    from ._eventbus import EventBus
    from ._worker import Worker

logger = logging.getLogger("stem.control")

REQUEST = "stem.control"
REPLY = "stem.control.reply"
COMMANDS = ("ping", "stats", "active", "revoke", "pause", "resume", "shutdown")
#: active tasks listed in one reply at most (the rest are counted)
MAX_ACTIVE = 40
#: abandoned threads listed per ``active`` reply (beside the running tasks)
MAX_ABANDONED = 10
#: broadcast bodies must stay under the contract's limit
_MAX_BYTES = 7_500


@attrs.frozen(kw_only=True)
class ControlReply:
    """One worker's answer to a remote-control request."""

    worker_id: str
    command: str
    ok: bool
    data: Mapping[str, Any] = attrs.field(factory=dict)
    error: str | None = None


@attrs.define(eq=False)
class Control:
    """Answers remote-control requests for one worker (lives in its nursery)."""

    worker: Worker
    handled: int = attrs.field(default=0, init=False)

    @property
    def _bus(self) -> EventBus:
        return self.worker.bus

    async def run(self, *, task_status: trio.TaskStatus[None]) -> None:
        """Subscribe, then report ready; answers until cancelled."""
        backend = self.worker.backend
        async with backend.broker.subscribe() as inbox:
            task_status.started()
            async for message in inbox:
                if message.get("kind") != REQUEST:
                    continue
                request = parse_request(message)
                if request is None:
                    continue
                command, request_id, args, dest = request
                me = self.worker.config.worker_id
                if dest is not None and me not in dest:
                    continue
                await self._handle(backend, command, request_id, args)

    async def _handle(
        self,
        backend: Backend,
        command: str,
        request_id: str,
        args: Mapping[str, Any],
    ) -> None:
        me = self.worker.config.worker_id
        self._emit("control_received", command, request_id, True)
        after = None
        try:
            data, after = self._execute(command, args)
            reply = {"ok": True, "data": data, "error": None}
        except Exception as exc:  # a bad request never stops the worker
            reply = {"ok": False, "data": {}, "error": f"{type(exc).__name__}: {exc}"}
        body = {
            "kind": REPLY,
            "request_id": request_id,
            "worker_id": me,
            "command": command,
            **reply,
        }
        try:
            await backend.broker.broadcast(_fit(body))
        except BrokerUnavailable as exc:
            logger.warning("could not reply to %r: %s", command, exc)
        except Exception:
            logger.exception("could not reply to %r", command)
        self.handled += 1
        self._emit("control_completed", command, request_id, bool(reply["ok"]))
        if after is not None:
            after()

    def _execute(self, command: str, args: Mapping[str, Any]) -> tuple[Any, Any]:
        """The reply data, and an action to run after replying (shutdown)."""
        worker = self.worker
        match command:
            case "ping":
                return {"at": now()}, None
            case "stats":
                stats = attrs.asdict(worker.worker_statistics(), recurse=True)
                stats["active"] = len(stats["active"])
                stats["abandoned_threads"] = len(stats.pop("abandoned"))
                return stats, None
            case "active":
                current = worker.worker_statistics()
                tasks = [attrs.asdict(t) for t in current.active]
                abandoned = [attrs.asdict(t) for t in current.abandoned]
                return {
                    "tasks": tasks[:MAX_ACTIVE],
                    "omitted": max(len(tasks) - MAX_ACTIVE, 0),
                    "abandoned": abandoned[:MAX_ABANDONED],
                    "abandoned_omitted": max(len(abandoned) - MAX_ABANDONED, 0),
                }, None
            case "revoke":
                task_id = _text(args, "task_id")
                done = False
                if args.get("terminate"):
                    done = worker.terminate(task_id, str(args.get("reason", "revoked")))
                return {"task_id": task_id, "terminated": done}, None
            case "pause":
                queue = _text(args, "queue")
                return {"queue": queue, "changed": worker.pause(queue)}, None
            case "resume":
                queue = _text(args, "queue")
                return {"queue": queue, "changed": worker.resume(queue)}, None
            case "shutdown":
                mode = str(args.get("mode", "warm"))
                if mode not in ("warm", "soft", "hard"):
                    raise ValueError(f"unknown shutdown mode {mode!r}")
                return {"mode": mode}, lambda: worker.shutdown(mode)  # type: ignore[arg-type]
            case _:
                raise ValueError(f"unknown command {command!r}")

    def _emit(self, signal: str, command: str, request_id: str, ok: bool) -> None:
        if self._bus.wants(signal):
            self._bus.emit(
                ControlEvent(
                    signal=signal,
                    at=now(),
                    command=command,
                    worker_id=self.worker.config.worker_id,
                    request_id=request_id,
                    ok=ok,
                )
            )


#: the longest request id a worker answers (ids are made by ``new_id``)
_MAX_REQUEST_ID = 200


def parse_request(
    message: Mapping[str, Any],
) -> tuple[str, str, Mapping[str, Any], list[str] | None] | None:
    """``(command, request_id, args, destination)`` of a request, or None
    (logged) when a field has the wrong type: ``command`` a known command,
    ``request_id`` a short string, ``args`` an object (or null),
    ``destination`` null or a list of worker ids."""
    command = message.get("command")
    request_id = message.get("request_id", "")
    args = message.get("args")
    dest = message.get("destination")
    problem = None
    if command not in COMMANDS:
        problem = f"unknown command {command!r:.60}"
    elif not isinstance(request_id, str) or len(request_id) > _MAX_REQUEST_ID:
        problem = "request_id must be a short string"
    elif args is not None and not isinstance(args, dict):
        problem = "args must be an object"
    elif dest is not None and not (
        isinstance(dest, list) and all(isinstance(w, str) for w in dest)
    ):
        problem = "destination must be null or a list of worker ids"
    if problem is not None:
        logger.warning("dropped a malformed control request: %s", problem)
        return None
    assert isinstance(command, str)
    assert isinstance(request_id, str)
    return command, request_id, args or {}, dest


def _text(args: Mapping[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} must be a non-empty string")
    return value


def _fit(body: dict[str, Any]) -> dict[str, Any]:
    """Shrink a reply that would pass the broadcast size limit."""
    if len(dumps(body, what="control reply")) <= _MAX_BYTES:
        return body
    return {**body, "data": {"truncated": True}}


@attrs.define(eq=False)
class RemoteControl:
    """``client.control``: ask every live worker (or some) and collect answers.

    Every call broadcasts one request and returns the replies that arrived
    within ``timeout`` seconds, one per answering worker, sorted by worker id.
    It returns early once every worker with a live heartbeat (among
    ``destination`` when given) has answered. A worker that is busy or gone
    simply does not appear in the list.
    """

    backend: Backend

    async def ping(
        self, *, timeout: float = 1.0, destination: Sequence[str] | None = None
    ) -> list[ControlReply]:
        return await self.broadcast("ping", timeout=timeout, destination=destination)

    async def stats(
        self, *, timeout: float = 1.0, destination: Sequence[str] | None = None
    ) -> list[ControlReply]:
        """Counters, slots and paused queues of each worker."""
        return await self.broadcast("stats", timeout=timeout, destination=destination)

    async def active(
        self, *, timeout: float = 1.0, destination: Sequence[str] | None = None
    ) -> list[ControlReply]:
        """The tasks each worker is running (``data["tasks"]``)."""
        return await self.broadcast("active", timeout=timeout, destination=destination)

    async def revoke(
        self,
        task_id: str,
        *,
        terminate: bool = False,
        reason: str = "revoked",
        timeout: float = 1.0,
    ) -> list[ControlReply]:
        """Tell every worker now (``client.revoke`` also stores the order)."""
        return await self.broadcast(
            "revoke",
            {"task_id": task_id, "terminate": terminate, "reason": reason},
            timeout=timeout,
        )

    async def pause(
        self,
        queue: str,
        *,
        timeout: float = 1.0,
        destination: Sequence[str] | None = None,
    ) -> list[ControlReply]:
        """Workers stop claiming from ``queue`` (running tasks go on)."""
        return await self.broadcast(
            "pause", {"queue": queue}, timeout=timeout, destination=destination
        )

    async def resume(
        self,
        queue: str,
        *,
        timeout: float = 1.0,
        destination: Sequence[str] | None = None,
    ) -> list[ControlReply]:
        return await self.broadcast(
            "resume", {"queue": queue}, timeout=timeout, destination=destination
        )

    async def shutdown(
        self,
        mode: str = "warm",
        *,
        timeout: float = 1.0,
        destination: Sequence[str] | None = None,
    ) -> list[ControlReply]:
        """Stop workers: ``warm`` (finish running tasks within the grace
        period), ``soft`` (cancel them and hand them back), ``hard`` (stop
        now)."""
        if mode not in ("warm", "soft", "hard"):
            raise ValueError(
                f"shutdown mode must be 'warm', 'soft' or 'hard', got {mode!r}"
            )
        return await self.broadcast(
            "shutdown", {"mode": mode}, timeout=timeout, destination=destination
        )

    async def broadcast(
        self,
        command: str,
        args: Mapping[str, Any] | None = None,
        *,
        timeout: float = 1.0,
        destination: Sequence[str] | None = None,
    ) -> list[ControlReply]:
        """Send ``command`` and collect the replies for ``timeout`` seconds."""
        if command not in COMMANDS:
            raise ValueError(f"unknown command {command!r}; known: {COMMANDS}")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        if isinstance(destination, str):
            destination = [destination]
        request_id = new_id()
        request = {
            "kind": REQUEST,
            "request_id": request_id,
            "command": command,
            "args": dict(args or {}),
            "destination": None if destination is None else list(destination),
        }
        expected = {w.worker_id for w in await self.backend.heartbeats.workers()}
        if destination is not None:
            expected &= set(destination)
        replies: dict[str, ControlReply] = {}
        async with self.backend.broker.subscribe() as inbox:
            await self.backend.broker.broadcast(request)
            with trio.move_on_after(timeout):
                async for message in inbox:
                    if (
                        message.get("kind") != REPLY
                        or message.get("request_id") != request_id
                    ):
                        continue
                    worker_id = message.get("worker_id")
                    data, error = message.get("data"), message.get("error")
                    if not isinstance(worker_id, str) or not worker_id:
                        continue  # not a worker's reply
                    replies[worker_id] = ControlReply(
                        worker_id=worker_id,
                        command=command,
                        ok=message.get("ok") is True,
                        data=data if isinstance(data, dict) else {},
                        error=error if isinstance(error, str | None) else str(error),
                    )
                    if expected and expected <= replies.keys():
                        break
        return [replies[w] for w in sorted(replies)]
