"""What a worker offers to be steered from outside: stop, terminate a task,
pause and resume a queue (remote control, ``stem.main``, the client).

A mixin of :class:`stem.actors._worker.Worker`: the methods run on the
worker itself and change only its own state, as its owner's methods.
"""

from __future__ import annotations

import trio

from stem._workerconfig import WorkerConfig

from ._duties import Activity
from ._workerstate import SHUTDOWN_MODES, Running, ShutdownMode, WorkerState


class WorkerControl:
    """The worker's control methods (state declared for type checking; the
    fields are the Worker's)."""

    config: WorkerConfig
    state: WorkerState
    _running: dict[str, Running]
    _run_scope: trio.CancelScope
    _paused: set[str]
    _resumed: trio.Event
    _activity: Activity
    _waiting_claim: trio.CancelScope | None

    async def wait_stopped(self) -> None:
        """Return once this worker has stopped for good (asked to, remotely
        or by leaving ``client.worker()``); a crash that the supervisor
        restarts is not a stop."""
        await self.state.stopped.wait()

    def terminate(self, task_id: str, reason: str = "revoked") -> bool:
        """Cancel the running attempt of ``task_id``; False if none runs here."""
        running = self._running.get(task_id)
        if running is None:
            return False
        running.cancel_reason = reason
        running.scope.cancel()
        return True

    def shutdown(self, mode: ShutdownMode = "warm") -> None:
        """Stop this worker: ``warm`` lets running tasks finish within the
        grace period; ``soft`` cancels them at once and hands them back;
        ``hard`` stops now (running attempts cancelled, held deliveries
        handed back in one best-effort step, nothing else awaited)."""
        if mode not in SHUTDOWN_MODES:
            raise ValueError(f"shutdown mode must be one of {SHUTDOWN_MODES}")
        if mode == "hard":
            self._run_scope.cancel()
            return
        if mode == "soft":
            self.state.grace = 0.0
        self.state.stop_requested.set()

    def pause(self, queue: str) -> bool:
        """Stop claiming from ``queue`` (on a cross-process backend a claim
        already waiting may still return one batch). False if this worker
        does not consume it."""
        if queue not in self.config.queues:
            return False
        self._paused.add(queue)
        self._queues_changed()
        return True

    def resume(self, queue: str) -> bool:
        """Claim from ``queue`` again. False if it was not paused here."""
        if queue not in self._paused:
            return False
        self._paused.discard(queue)
        self._queues_changed()
        self._resumed.set()
        return True

    def _queues_changed(self) -> None:
        self._activity.touch()
        if self._waiting_claim is not None:  # in-process: claims wait long
            self._waiting_claim.cancel()

    @property
    def paused(self) -> frozenset[str]:
        return frozenset(self._paused)
