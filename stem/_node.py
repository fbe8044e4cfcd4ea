"""The client as the runtime's actors see it: :class:`ClientNode`.

Actors never hold the :class:`stem.Client`; they get a
:class:`stem.actors.Node`, which the client implements with this small
adapter object (its backend, bus, publishing and app, and the children of
its supervisor), so that users keep one short ``Client`` API and actors one
short protocol (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._envelope import Envelope
from ._result import TaskResult
from ._workflow import WorkflowScript
from .actors import ActorRef, ChildSpec, Supervisor
from .actors._eventbus import EventBus
from .actors._workflow import WorkflowEngine, create_run
from .contracts import Backend

if TYPE_CHECKING:
    from ._client import Client


class ClientNode:
    """The client as the runtime's actors see it (:class:`stem.actors.Node`):
    its backend, bus, publishing and app, and its supervisor's children."""

    def __init__(self, client: Client, supervisor: Supervisor) -> None:
        self._client = client
        self._supervisor = supervisor
        self.app = client.app
        self.build_envelope = client.build_envelope
        self.enqueue = client.enqueue
        self.add_finish_hook = client.add_finish_hook
        #: this node's workflow engines, by child name
        self._engines: dict[str, WorkflowEngine] = {}

    @property
    def backend(self) -> Backend:
        return self._client.backend

    @property
    def bus(self) -> EventBus:
        return self._client.bus

    async def publish(self, envelopes: Sequence[Envelope]) -> list[str]:
        return await self._client.publish(envelopes)

    async def get(self, task_id: str) -> TaskResult | None:
        return await self._client.get(task_id)

    async def revoke(
        self, task_id: str, *, terminate: bool = False, reason: str = "revoked"
    ) -> None:
        await self._client.revoke(task_id, terminate=terminate, reason=reason)

    async def start_child(self, spec: ChildSpec[Any]) -> ActorRef[Any]:
        return await self._supervisor.start_child(spec)

    async def stop_child(self, name: str) -> None:
        try:
            await self._supervisor.stop_child(name)
        except KeyError:
            pass

    def has_child(self, name: str) -> bool:
        """The supervisor still runs (or restarts) child ``name``."""
        return any(
            child.name == name and child.state != "stopped"
            for child in self._supervisor.statistics().children
        )

    async def wait_ended(self) -> None:
        """Return once the node's supervisor has ended (it gave up)."""
        await self._supervisor.wait_ended()

    def wake_workflow_engines(self) -> None:
        for engine in self._engines.values():
            engine.nudge()

    async def start_engine(
        self, name: str, scripts: Mapping[str, Mapping[int, WorkflowScript]]
    ) -> None:
        """Run a WorkflowEngine for ``scripts`` (name -> version -> script)
        as child ``name``."""

        def make_engine() -> WorkflowEngine:
            engine = WorkflowEngine(node=self, scripts=scripts)
            self._engines[name] = engine
            return engine

        await self.start_child(ChildSpec(name, make_engine))

    async def stop_engine(self, name: str) -> None:
        self._engines.pop(name, None)
        await self.stop_child(name)

    async def create_run(
        self,
        script: WorkflowScript,
        params: Any,
        run_id: str,
        *,
        parent_id: str | None = None,
    ) -> bool:
        return await create_run(self, script, params, run_id, parent_id=parent_id)
