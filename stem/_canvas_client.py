"""``client.canvas``: submit chains, groups and chords; handles on them.

The graph types and their planning are the domain half (``stem/_canvas.py``);
the coordinator and the finish hook that advance a canvas are actors
(``stem/actors/_canvas.py``). This is the facade between the user and them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ._canvas import (
    Canvasable,
    Chain,
    Chord,
    Group,
    Kind,
    Signature,
    Spec,
    chord,
    failure_of,
    member_ids,
)
from ._clock import now
from ._durations import Duration
from ._progress import Progress
from ._result import TaskResult
from ._states import TaskState
from .actors import ActorRef
from .actors._canvas import CanvasMessage, Submit

if TYPE_CHECKING:
    from ._client import Client


@attrs.frozen(kw_only=True, eq=False)
class CanvasHandle:
    """A submitted chain, group or chord.

    ``id`` is the canvas-level result id: a chain's last step, a group's own
    record (written when its last member finishes), a chord's callback. Every
    method reads the result backend, so a handle rebuilt in another process
    with ``client.canvas.handle(id)`` waits on the same record.
    """

    id: str
    kind: Kind | None
    member_ids: tuple[str, ...]
    _client: Client = attrs.field(alias="client", repr=False)

    async def get(self, timeout: Duration | None = None) -> Any:
        """The canvas's value once it finishes: a chain's last result, a
        group's list of results (member order), a chord's callback result.

        Raises ``stem.TaskFailed`` (with the failing member's error and id) if
        it failed or was revoked, ``stem.WaitTimeout`` after ``timeout`` s.
        Woken by the backend's write, not by polling alone.
        """
        result = await self._client.wait_for(self.id, timeout=timeout)
        if result.state is TaskState.SUCCEEDED:
            return result.value
        raise failure_of(result)

    async def result(self) -> TaskResult | None:
        """The canvas-level record now (None while nothing has been written)."""
        return await self._client.get(self.id)

    async def state(self) -> TaskState:
        """The canvas's state: its record's state once written; before that
        RUNNING if any member has started, else QUEUED."""
        record = await self._client.get(self.id)
        if record is not None and record.state is not TaskState.QUEUED:
            return record.state
        if self.member_ids:
            members = await self._client.backend.results.get_many(self.member_ids)
            if any(m is not None and m.state is not TaskState.QUEUED for m in members):
                return TaskState.RUNNING
        return TaskState.QUEUED

    async def progress(self) -> Progress | None:
        """How far the canvas got: ``done`` direct members finished out of
        ``total`` (a chain's steps, a group's or chord's members), with
        ``info={"running": n}``; None for a handle without member ids (one
        rebuilt from an id alone). Each member's own ``ctx.progress`` report
        is on its record (:meth:`results`)."""
        members = await self.results()
        if not members:
            return None
        done = sum(1 for m in members if m is not None and m.is_terminal)
        running = sum(
            1 for m in members if m is not None and m.state is TaskState.RUNNING
        )
        return Progress(
            done=done, total=len(members), info={"running": running}, at=now()
        )

    async def results(self) -> list[TaskResult | None]:
        """One record per direct member, in member order (a chain's steps, a
        group's or chord's members; a nested canvas appears as its own
        canvas-level record). None for a member not started yet or expired."""
        if not self.member_ids:
            return []
        return await self._client.backend.results.get_many(self.member_ids)


@attrs.frozen(eq=False)
class Canvas:
    """``client.canvas``: submit chains, groups and chords.

    Each call is a message to the client's CanvasCoordinator actor, which
    validates the whole graph (registered task names, encodable args) before
    anything is enqueued, then publishes the first wave in one batch.
    """

    _client: Client
    _coordinator: ActorRef[CanvasMessage]

    async def chain(self, steps: Iterable[Canvasable]) -> CanvasHandle:
        """Submit ``steps`` to run one after another."""
        return await self.submit(Chain(steps=steps))

    async def group(self, members: Iterable[Canvasable]) -> CanvasHandle:
        """Submit ``members`` to run in parallel."""
        return await self.submit(Group(members=members))

    async def chord(
        self,
        members: Iterable[Canvasable],
        *,
        callback: Signature,
        allow_failures: bool = False,
        on_error: Signature | None = None,
    ) -> CanvasHandle:
        """Submit ``members`` in parallel, then ``callback`` with their results."""
        return await self.submit(
            chord(
                members,
                callback=callback,
                allow_failures=allow_failures,
                on_error=on_error,
            )
        )

    async def submit(self, node: Chain | Group | Chord) -> CanvasHandle:
        """Validate and enqueue a built canvas (``stem.chain(...)`` etc.)."""
        if not isinstance(node, Chain | Group | Chord):
            raise TypeError(
                f"submit a stem.chain/group/chord, got {type(node).__name__}"
            )
        ref = self._coordinator
        spec: Spec = await ref.ask(
            lambda reply: Submit(node=node, reply=reply), timeout=120
        )
        return self.handle_for(spec)

    def handle_for(self, spec: Spec) -> CanvasHandle:
        kind = spec["t"]
        assert kind in ("chain", "group", "chord")
        return CanvasHandle(
            id=spec["id"],
            kind=kind,
            member_ids=tuple(member_ids(spec)),
            client=self._client,
        )

    def handle(self, canvas_id: str, member_ids: Sequence[str] = ()) -> CanvasHandle:
        """A handle on a canvas submitted elsewhere (another process): ``get``
        and ``state`` work from the id alone; ``results`` needs ``member_ids``."""
        return CanvasHandle(
            id=canvas_id, kind=None, member_ids=tuple(member_ids), client=self._client
        )
