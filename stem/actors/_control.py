"""Remote control over the broker's broadcast channel.

Worker side: one :class:`Control` actor per worker subscribes to
``backend.broker.subscribe()`` and answers requests addressed to every worker
or to it by id. Client side: :class:`RemoteControl` (``client.control``)
broadcasts a request with a fresh ``request_id`` and collects the replies
(broadcast back with the same id) from every live worker until each worker
with a live heartbeat answered or the timeout passed.

Wire format (JSON objects, under the 7,900-byte broadcast limit)::

    {"kind": "stem.control", "request_id": ..., "command": "ping",
     "args": {...}, "destination": null | [worker ids],
     "origin": "host pid 123", "issued_at": 1750000000.0, "sig": ...}
    {"kind": "stem.control.reply", "request_id": ..., "worker_id": ...,
     "command": "ping", "ok": true, "data": {...}, "error": null, "sig": ...}

With signing (``app.signing``) requests and replies carry ``sig`` (see
``stem._signing``). A worker ignores, with a warning, a request whose
signature does not verify, an unsigned one under ``require_signed``, and a
signed one older than ``max_age`` or whose id it has seen (a replay); a
client ignores replies that fail the same way. Every command a worker
obeys is logged (logger ``stem.control``, INFO) with its origin and the key
that signed it.

Commands: ``ping``, ``stats``, ``active``, ``revoke`` (``task_id``,
``terminate``, ``reason``), ``pause`` / ``resume`` (``queue``), ``shutdown``
(``mode``: warm, soft, hard).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import trio

from stem._clock import now
from stem._codec import dumps
from stem._errors import BrokerUnavailable
from stem._ids import new_id
from stem._signals import ControlEvent
from stem._signing import Signing
from stem._text import escape_control

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
    #: signed request ids seen, with when each may be forgotten (replays)
    _seen: dict[str, float] = attrs.field(factory=dict, init=False)

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
                origin = self._admit(message, command, request_id)
                if origin is None:
                    continue
                logger.info(
                    "obeying control command %r (request %s) from %s",
                    command,
                    request_id,
                    origin,
                )
                await self._handle(backend, command, request_id, args)

    def _admit(
        self, message: Mapping[str, Any], command: str, request_id: str
    ) -> str | None:
        """Where a request comes from (its claimed origin and the key that
        signed it), or None (logged) when it must be ignored."""
        signing = self.worker.app.signing
        claimed = message.get("origin")
        origin = (
            repr(escape_control(claimed[:100]))
            if isinstance(claimed, str)
            else "an unnamed sender"
        )
        if signing is None:
            return f"{origin} (signing off)"
        problem, key_id = signing.check_control(message)
        if problem is None and key_id:
            problem = self._stale(message, request_id, signing)
        if problem is not None:
            logger.warning(
                "ignored control command %r (request %.60s) from %s: %s",
                command,
                request_id,
                origin,
                problem,
            )
            return None
        if not key_id:
            return f"{origin}, unsigned"
        return f"{origin}, signed by key {key_id!r}"

    def _stale(
        self, message: Mapping[str, Any], request_id: str, signing: Signing
    ) -> str | None:
        """Why a signed request is a replay (too old, from the future, or
        seen before), or None."""
        at = now()
        for rid in [r for r, until in self._seen.items() if until <= at]:
            del self._seen[rid]
        issued = message.get("issued_at")
        if isinstance(issued, bool) or not isinstance(issued, int | float):
            return "a signed request needs its issued_at time"
        if not -signing.max_age <= at - issued <= signing.max_age:
            return (
                f"issued {at - issued:.0f} s ago, outside the {signing.max_age:g} s "
                "a signed request is valid (a replay, or clocks apart)"
            )
        if request_id in self._seen:
            return "a replay of a request already obeyed"
        if len(self._seen) >= _MAX_SEEN:
            del self._seen[next(iter(self._seen))]
        self._seen[request_id] = issued + signing.max_age
        return None

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
        signing = self.worker.app.signing
        fitted = _fit(body)
        if signing is not None:
            fitted = signing.sign_control(fitted)
        try:
            await backend.broker.broadcast(fitted)
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
#: signed request ids a worker remembers (within ``max_age``) at most
_MAX_SEEN = 10_000
#: what a request says about where it comes from
_ORIGIN = f"{socket.gethostname()} pid {os.getpid()}"[:100]


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
    signing: Signing | None = None

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
        request = self.request(command, args, destination=destination)
        request_id = request["request_id"]
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
                    if self.signing is not None:
                        problem, _ = self.signing.check_control(message)
                        if problem is not None:
                            logger.warning(
                                "ignored a reply to %r claiming to be from "
                                "worker %r: %s",
                                command,
                                escape_control(worker_id[:100]),
                                problem,
                            )
                            continue
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

    def request(
        self,
        command: str,
        args: Mapping[str, Any] | None = None,
        *,
        destination: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """A request body for ``command``: a fresh id, this process as its
        origin, the time it is issued, signed when the app signs."""
        request = {
            "kind": REQUEST,
            "request_id": new_id(),
            "command": command,
            "args": dict(args or {}),
            "destination": None if destination is None else list(destination),
            "origin": _ORIGIN,
            "issued_at": now(),
        }
        return request if self.signing is None else self.signing.sign_control(request)

    async def send(
        self,
        command: str,
        args: Mapping[str, Any] | None = None,
        *,
        destination: Sequence[str] | None = None,
    ) -> None:
        """Broadcast ``command`` without waiting for replies."""
        if command not in COMMANDS:
            raise ValueError(f"unknown command {command!r}; known: {COMMANDS}")
        await self.backend.broker.broadcast(
            self.request(command, args, destination=destination)
        )
