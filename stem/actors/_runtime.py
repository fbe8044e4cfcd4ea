"""What the platform's actors see of the client they run for: :class:`Node`.

Actors never hold :class:`stem.Client` nor reach into its members; the
client hands each actor an object implementing this protocol (backend, event
bus, publishing, task lookup through the app, starting and stopping child
actors), so ``stem.actors`` never imports the facade.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from stem._wfcontext import WorkflowHost

if TYPE_CHECKING:
    from ._actor import ActorRef
    from ._broker import FinishHook
    from ._eventbus import EventBus
    from ._supervisor import ChildSpec


class Node(WorkflowHost, Protocol):
    """One runtime node: a client's backend, bus, supervisor and registry
    (``app`` and ``backend``, publishing, ``revoke`` and run creation come
    from :class:`stem._wfcontext.WorkflowHost`)."""

    @property
    def bus(self) -> EventBus:
        """The node's event bus (lifecycle signals)."""
        ...

    async def start_child(self, spec: ChildSpec[Any]) -> ActorRef[Any]:
        """Start an actor under the node's supervisor."""
        ...

    async def stop_child(self, name: str) -> None:
        """Stop the named child actor (nothing if it is not running)."""
        ...

    def add_finish_hook(self, hook: FinishHook) -> None:
        """Run ``hook`` on every batch of finished deliveries."""
        ...

    def wake_workflow_engines(self) -> None:
        """Tell this node's workflow engines to look for due runs now."""
        ...
