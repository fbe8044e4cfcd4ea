"""What code running inside the runtime sees of its client: :class:`Producer`.

A running task (``ctx.client``) and the runtime's actors enqueue through this
protocol instead of holding :class:`stem.Client`, so the domain and the
actors never import the facade. ``stem.Client`` implements it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from ._durations import Duration
from ._envelope import Envelope
from ._result import TaskResult


class Producer(Protocol):
    """Build, validate and publish task envelopes; read results."""

    def build_envelope(
        self,
        name: str,
        args: dict[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        countdown: Duration | None = None,
        eta: datetime | None = None,
        expires: Duration | datetime | None = None,
        task_id: str | None = None,
        unique_key: str | None = None,
        headers: dict[str, str] | None = None,
        max_retries: int | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Envelope:
        """Validate a call and build its envelope (nothing is written)."""
        ...

    async def publish(self, envelopes: Sequence[Envelope]) -> list[str]:
        """Store envelopes in one batch; returns their ids."""
        ...

    async def enqueue(
        self,
        name: str,
        args: dict[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        countdown: Duration | None = None,
        eta: datetime | None = None,
        expires: Duration | datetime | None = None,
        task_id: str | None = None,
        unique_key: str | None = None,
        headers: dict[str, str] | None = None,
        max_retries: int | None = None,
    ) -> str:
        """Queue a call of task ``name``; returns the task id once stored."""
        ...

    async def get(self, task_id: str) -> TaskResult | None:
        """What is known about ``task_id``."""
        ...
