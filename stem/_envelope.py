"""The envelope: one task message as it travels through a broker."""

from __future__ import annotations

from typing import Any

import attrs

from ._options import DEFAULT_QUEUE


@attrs.frozen(kw_only=True)
class Envelope:
    """One task message.

    ``id`` is time-ordered, unique, and stable across retries: a retry is the
    same task with ``attempt`` increased. Times are Unix epoch seconds.
    ``meta`` carries platform data (attempt history, canvas continuation,
    unique key, revocation reason); ``headers`` carry user and tracing data.
    """

    id: str
    name: str
    args: dict[str, Any] = attrs.field(factory=dict)
    headers: dict[str, str] = attrs.field(factory=dict)
    queue: str = DEFAULT_QUEUE
    priority: int = 0
    attempt: int = 1
    max_retries: int = 0
    not_before: float | None = None
    enqueued_at: float = 0.0
    expires: float | None = None
    meta: dict[str, Any] = attrs.field(factory=dict)

    def with_headers(self, headers: dict[str, str]) -> Envelope:
        """This envelope with ``headers`` instead (``attrs.evolve`` costs
        half as much again; tracing does this for every publish)."""
        return Envelope(
            id=self.id,
            name=self.name,
            args=self.args,
            headers=headers,
            queue=self.queue,
            priority=self.priority,
            attempt=self.attempt,
            max_retries=self.max_retries,
            not_before=self.not_before,
            enqueued_at=self.enqueued_at,
            expires=self.expires,
            meta=self.meta,
        )

    def is_expired(self, at: float) -> bool:
        return self.expires is not None and at >= self.expires

    def is_due(self, at: float) -> bool:
        return self.not_before is None or at >= self.not_before

    def next_attempt(
        self, *, not_before: float | None, error: dict[str, Any]
    ) -> Envelope:
        """This task's next attempt, with ``error`` appended to its history."""
        history = [*self.meta.get("history", ()), error]
        return attrs.evolve(
            self,
            attempt=self.attempt + 1,
            not_before=not_before,
            meta={**self.meta, "history": history},
        )
