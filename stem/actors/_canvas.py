"""The canvas runtime: the CanvasCoordinator actor and the finish hook.

* :class:`CanvasCoordinator` takes ``Submit`` messages from ``client.canvas``:
  it validates the whole graph (registered names, encodable args and options)
  before anything is written, then publishes the first wave of every submit
  in its batch with one ``client.publish``.
* :class:`CanvasHook` runs in the BrokerActor for every batch of finished
  deliveries (after their results are stored, before anything is acked). A
  leaf's continuation travels in its envelope meta (``meta["canvas"]``: the
  frame stack, innermost last), so whichever worker finishes a leaf advances
  the graph: it publishes a chain's next link, records a group/chord member in
  the backend's group counter (idempotent per index), and the member that
  completes the join takes the node's lock and fires the callback or writes
  the group record. Nothing is kept in any process's memory.

Exactly-once firing: the lock of a join is taken with
``locks.acquire(key, owner=<finishing leaf's task id>)``. Every other member
is refused, while a redelivery of the *same* leaf (its worker died after
taking the lock, before its batch was acked) gets it again and re-fires; a
re-fire publishes nothing whose record shows it was already started.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from stem._canvas import (
    CANVAS_TTL,
    META_KEY,
    Chain,
    Chord,
    Frame,
    Group,
    Launch,
    Spec,
    enqueue_options,
    leaves,
    member_entry,
    node_ids,
    start,
    to_spec,
)
from stem._clock import now
from stem._envelope import Envelope
from stem._errors import GroupExpired, UnknownTask
from stem._result import ErrorInfo, TaskResult
from stem._states import TaskState

from ._actor import Actor, ActorRef
from ._mailbox import Mailbox, Reply
from ._supervisor import ChildSpec

if TYPE_CHECKING:
    from ._broker import Finish
    from ._runtime import Node

logger = logging.getLogger("stem.canvas")

_LOCK_PREFIX = "stem:canvas:"


@attrs.frozen(kw_only=True, eq=False)
class Submit:
    """Validate ``node`` and enqueue its first wave; replied with its spec."""

    node: Chain | Group | Chord
    reply: Reply[Spec]


CanvasMessage = Submit


@attrs.define(eq=False)
class CanvasCoordinator(Actor[CanvasMessage]):
    """Accepts canvas submissions; one publish per batch of submissions."""

    node: Node

    batch_size = 50

    async def handle_batch(self, batch: list[CanvasMessage]) -> None:
        accepted: list[tuple[Submit, Spec]] = []
        envelopes: list[Envelope] = []
        for msg in batch:
            try:
                spec = to_spec(msg.node)
                validate(self.node, spec)
                envelopes.extend(
                    build_envelopes(self.node, start(spec, ()), headers={})
                )
            except Exception as exc:
                msg.reply.fail(exc)
                continue
            accepted.append((msg, spec))
        if not accepted:
            return
        try:
            await self.node.publish(envelopes)
        except Exception as exc:
            for msg, _ in accepted:
                msg.reply.fail(exc)
            return
        for msg, spec in accepted:
            msg.reply.send(spec)


def validate(node: Node, spec: Spec) -> None:
    """Raise for any leaf of ``spec`` that could not be enqueued: an
    unregistered name (when the node registers tasks) or args/options that
    cannot be encoded. Writes nothing."""
    app = node.app
    registers = any(True for _ in app)
    for leaf in leaves(spec):
        name = leaf["name"]
        if registers and app.find_task(name) is None:
            raise UnknownTask(
                f"canvas member {name!r} is not a registered task "
                f"(registered: {', '.join(sorted(app.tasks)) or 'none'})"
            )
        try:
            node.build_envelope(
                name, leaf["args"], task_id=leaf["id"], **enqueue_options(leaf)
            )
        except Exception as exc:
            raise type(exc)(f"canvas member {name!r}: {exc}") from exc


def build_envelopes(
    node: Node, launches: Sequence[Launch], *, headers: dict[str, str]
) -> list[Envelope]:
    """Envelopes for ``launches``; the continuation rides in their meta."""
    out: list[Envelope] = []
    for launch in launches:
        spec = launch.spec
        opts = enqueue_options(spec)
        own_headers = opts.pop("headers", None) or {}
        meta: dict[str, Any] = {}
        if launch.stack:
            meta[META_KEY] = {"stack": list(launch.stack)}
        if launch.has_previous:
            meta["previous_result"] = launch.previous
        out.append(
            node.build_envelope(
                spec["name"],
                spec["args"],
                task_id=spec["id"],
                headers={**headers, **own_headers},
                meta=meta,
                **opts,
            )
        )
    return out


def error_of(result: TaskResult) -> ErrorInfo:
    """The error a failed member is reported with (revocations get one too)."""
    if result.error is not None:
        return result.error
    reason = result.meta.get("reason", "revoked")
    return ErrorInfo(
        type="stem.TaskRevoked",
        message=f"task {result.task_id} was {result.state.value} ({reason})",
    )


def root_task_id(result: TaskResult) -> str:
    """The leaf that caused a failure (nested records name it in meta)."""
    return str(result.meta.get("failed_task_id") or result.task_id)


@attrs.define(eq=False)
class CanvasHook:
    """The finish hook (see ``stem.actors._broker.FinishHook``) that advances
    canvases. Runs inside the BrokerActor's batch, so what it returns is
    published before the finished deliveries are acked."""

    node: Node

    async def __call__(self, finishes: Sequence[Finish]) -> Sequence[Envelope]:
        todo: list[tuple[Launch, dict[str, str]]] = []
        for fin in finishes:
            env = fin.delivery.envelope
            result = fin.result
            if env is None or result is None or not result.state.is_terminal:
                continue  # retries, hand-backs and undecodable bodies don't count
            canvas = env.meta.get(META_KEY)
            if not isinstance(canvas, dict) or not canvas.get("stack"):
                continue
            for launch in await self.advance(
                tuple(canvas["stack"]), result, owner=env.id
            ):
                todo.append((launch, env.headers))
        if not todo:
            return []
        # A re-fire (the finishing delivery was redelivered) publishes nothing
        # that has already started.
        existing = await self.node.backend.results.get_many(
            [launch.spec["id"] for launch, _ in todo]
        )
        envelopes: list[Envelope] = []
        for (launch, headers), record in zip(todo, existing, strict=True):
            if record is not None and record.state is not TaskState.REVOKED:
                continue
            envelopes.extend(build_envelopes(self.node, [launch], headers=headers))
        return envelopes

    async def advance(
        self, stack: tuple[Frame, ...], result: TaskResult, *, owner: str
    ) -> list[Launch]:
        """Hand ``result`` (the node under ``stack``'s innermost frame has
        finished) to the enclosing frames; returns what to enqueue next."""
        backend = self.node.backend
        results = backend.results
        frames = list(stack)
        out: list[Launch] = []
        while frames:
            frame = frames.pop()
            kind = frame["k"]
            if kind == "chain":
                rest: list[Spec] = frame["rest"]
                if result.ok:
                    inner = tuple(frames)
                    if len(rest) > 1:
                        inner = (*inner, {"k": "chain", "rest": rest[1:]})
                    out.extend(start(rest[0], inner, result.value, has_previous=True))
                    return out
                await self._abort(rest, result)
                continue  # the chain failed: its enclosing frame sees the failure
            node_id: str = frame["id"]
            size: int = frame["n"]
            allow_failures = kind == "chord" and bool(frame["af"])
            reason = f"{kind}-member-failed"
            try:
                count = await results.group_add(
                    node_id, frame["i"], result, ttl=CANVAS_TTL
                )
            except GroupExpired as exc:
                # The earlier members' results are gone: the node can never
                # complete, so it fails (naming the late member), once.
                settled = await results.get(node_id)
                if (settled is not None and settled.is_terminal) or not (
                    await backend.locks.acquire(
                        _LOCK_PREFIX + node_id, owner, ttl=CANVAS_TTL
                    )
                ):
                    return out
                count, reason = 0, f"{kind}-expired"
                ordered: list[TaskResult | None] = []
                failed: tuple[int, TaskResult] | None = (
                    frame["i"],
                    attrs.evolve(
                        result,
                        state=TaskState.FAILED,
                        error=ErrorInfo(type="stem.GroupExpired", message=str(exc)),
                    ),
                )
            else:
                fail_fast = not result.ok and not allow_failures
                if count < size and not fail_fast:
                    return out
                if not await backend.locks.acquire(
                    _LOCK_PREFIX + node_id, owner, ttl=CANVAS_TTL
                ):
                    return out  # another member completes (or completed) this node
                recorded = await results.group_results(node_id)
                ordered = [recorded.get(index) for index in range(size)]
                failed = next(
                    (
                        (index, m)
                        for index, m in enumerate(ordered)
                        if m is not None and not m.ok
                    ),
                    None,
                )
                if allow_failures:
                    failed = None
            if failed is not None:
                index, member = failed
                record = TaskResult(
                    task_id=node_id,
                    state=TaskState.FAILED,
                    error=error_of(member),
                    name=f"canvas.{kind}",
                    updated_at=now(),
                    meta={
                        "reason": reason,
                        "failed_task_id": root_task_id(member),
                        "index": index,
                    },
                )
                await results.set_state([record], ttl=CANVAS_TTL)
                if kind == "chord" and frame["err"] is not None:
                    info = {
                        "canvas_id": node_id,
                        "task_id": root_task_id(member),
                        "index": index,
                        "error": error_of(member).to_dict(),
                    }
                    out.append(
                        Launch(
                            spec=frame["err"],
                            stack=(),
                            previous=info,
                            has_previous=True,
                        )
                    )
                result = record
                continue
            if count < size:
                return out
            done = [m for m in ordered if m is not None]
            if kind == "group":
                record = TaskResult(
                    task_id=node_id,
                    state=TaskState.SUCCEEDED,
                    value=[m.value for m in done],
                    name="canvas.group",
                    updated_at=now(),
                )
                await results.set_state([record], ttl=CANVAS_TTL)
                result = record
                continue
            values = (
                [member_entry(m) for m in done]
                if allow_failures
                else [m.value for m in done]
            )
            out.extend(start(frame["cb"], tuple(frames), values, has_previous=True))
            return out
        return out

    async def _abort(self, rest: Sequence[Spec], failure: TaskResult) -> None:
        """Mark every node of a chain's remaining steps REVOKED (chain-aborted)."""
        at = now()
        error = error_of(failure)
        cause = root_task_id(failure)
        records = [
            TaskResult(
                task_id=task_id,
                state=TaskState.REVOKED,
                error=error,
                updated_at=at,
                meta={"reason": "chain-aborted", "failed_task_id": cause},
            )
            for spec in rest
            for task_id in node_ids(spec)
        ]
        if records:
            await self.node.backend.results.set_state(records, ttl=CANVAS_TTL)


async def start_canvas(node: Node) -> tuple[ActorRef[CanvasMessage], CanvasHook]:
    """Start the node's CanvasCoordinator; returns its address and the finish
    hook a worker node installs."""
    mailbox: Mailbox[CanvasMessage] = Mailbox(1000, name="canvas")
    ref = await node.start_child(
        ChildSpec("canvas", lambda: CanvasCoordinator(node), mailbox=mailbox)
    )
    return ref, CanvasHook(node)


__all__ = [
    "CanvasCoordinator",
    "CanvasHook",
    "Submit",
    "start_canvas",
]
