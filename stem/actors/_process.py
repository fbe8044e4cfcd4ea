"""``execution="process"``: run a sync handler in a killable worker process."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import attrs

from stem._errors import ConfigError
from stem._handler import FunctionTask

if TYPE_CHECKING:
    from stem._context import TaskContext
    from stem._handler import TaskHandler


async def run_in_process(handler: TaskHandler[Any], ctx: TaskContext, args: Any) -> Any:
    """Run a sync handler in a worker process (``execution="process"``).

    Cancellation (a hard time limit, terminate, shutdown) kills the process,
    so even a CPU-bound loop stops. The handler and its arguments must be
    picklable; the context it sees has no client, no cancel scope and
    cannot report progress.
    """
    try:
        import trio_parallel  # type: ignore[import-untyped,unused-ignore]
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError(
            "execution='process' needs trio-parallel: pip install 'trio-stem[process]'"
        ) from exc
    snapshot = attrs.evolve(ctx, client=None, cancel_scope=None, reporter=None)
    return await trio_parallel.run_sync(
        _target(handler), snapshot, args, kill_on_cancel=True
    )


def _target(handler: TaskHandler[Any]) -> Callable[..., Any]:
    """What to send to the process: a decorated function travels by its
    import path (``@stem.task`` replaced the module attribute, so pickling
    the function itself would fail); a handler instance travels pickled."""
    if isinstance(handler, FunctionTask):
        fn = handler.fn
        return partial(_call_by_reference, fn.__module__, fn.__qualname__)
    return handler


def _call_by_reference(module: str, qualname: str, ctx: Any, args: Any) -> Any:
    """Runs in the worker process: import the task and call it."""
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if isinstance(obj, FunctionTask):
        obj = obj.fn
    return obj(ctx, args)
