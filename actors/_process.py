"""``execution="process"``: run a sync handler in a killable worker process."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from stem._errors import ConfigError

if TYPE_CHECKING:
    from stem._context import TaskContext
    from stem._handler import TaskHandler


async def run_in_process(handler: TaskHandler[Any], ctx: TaskContext, args: Any) -> Any:
    """Run a sync handler in a worker process (``execution="process"``).

    Cancellation (a hard time limit, terminate, shutdown) kills the process,
    so even a CPU-bound loop stops. The handler and its arguments must be
    picklable; the context it sees has no client and no cancel scope.
    """
    try:
        import trio_parallel  # type: ignore[import-untyped,unused-ignore]
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError(
            "execution='process' needs trio-parallel: pip install 'trio-stem[process]'"
        ) from exc
    snapshot = attrs.evolve(ctx, client=None, cancel_scope=None)
    return await trio_parallel.run_sync(handler, snapshot, args, kill_on_cancel=True)
