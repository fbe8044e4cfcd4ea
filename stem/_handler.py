"""Task handlers: classes (``TaskHandler[T]``) and decorated functions."""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, overload

from ._options import TaskOptions, option_names

if TYPE_CHECKING:
    from ._context import TaskContext

T = TypeVar("T")

_TASK_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:\-]{0,199}")


def check_task_name(name: object) -> str:
    if not isinstance(name, str) or not _TASK_NAME.fullmatch(name):
        raise ValueError(
            f"invalid task name {name!r}: use 1-200 characters, starting with a "
            "letter or '_', then letters, digits, '_', '.', ':', '-'"
        )
    return name


class TaskHandler(Generic[T]):
    """Base class of a task: set ``name`` (and optionally ``options``) and
    implement ``async def __call__(self, ctx, args) -> T``.

    A synchronous ``def __call__`` is allowed too; it runs in a worker thread
    (or a worker process with ``TaskOptions(execution="process")``).
    """

    name: ClassVar[str] = ""
    options: ClassVar[TaskOptions] = TaskOptions()

    def __call__(self, ctx: TaskContext, args: dict[str, Any]) -> Awaitable[T] | T:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__")

    @property
    def task_name(self) -> str:
        """The registered name (``name``, checked)."""
        return check_task_name(self.name)

    @property
    def task_options(self) -> TaskOptions:
        opts = self.options
        if not isinstance(opts, TaskOptions):
            raise TypeError(f"{type(self).__name__}.options must be a stem.TaskOptions")
        return opts

    @property
    def is_async(self) -> bool:
        """Whether ``__call__`` is a coroutine function (else it runs in a thread)."""
        return inspect.iscoroutinefunction(type(self).__call__)

    def __repr__(self) -> str:
        return f"<task {self.name!r} ({type(self).__name__})>"


class FunctionTask(TaskHandler[Any]):
    """A task made from a plain function by :func:`task`."""

    def __init__(
        self,
        fn: Callable[..., Any],
        name: str,
        options: TaskOptions,
    ) -> None:
        self.fn = fn
        # Instance attributes shadow the class-level defaults.
        self.name = check_task_name(name)  # type: ignore[misc]
        self.options = options  # type: ignore[misc]
        self._is_async = inspect.iscoroutinefunction(fn)
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    @property
    def is_async(self) -> bool:
        return self._is_async

    def __call__(self, ctx: TaskContext, args: dict[str, Any]) -> Any:
        return self.fn(ctx, args)

    def __repr__(self) -> str:
        return f"<task {self.name!r} ({getattr(self.fn, '__qualname__', self.fn)!s})>"


_F = TypeVar("_F", bound=Callable[..., Any])


@overload
def task(fn: Callable[..., Any], /) -> FunctionTask: ...
@overload
def task(
    name: str | None = None, /, **options: Any
) -> Callable[[Callable[..., Any]], FunctionTask]: ...
def task(
    name_or_fn: str | Callable[..., Any] | None = None, /, **options: Any
) -> FunctionTask | Callable[[Callable[..., Any]], FunctionTask]:
    """Make a task from an async or sync function ``fn(ctx, args)``.

    ``@stem.task``, ``@stem.task()`` and ``@stem.task("name", max_retries=3,
    queue="mail")`` all work; options are :class:`TaskOptions` fields, checked
    now. Without a name the task is named ``module.qualname``.
    """
    unknown = set(options) - option_names()
    if unknown:
        raise TypeError(
            f"unknown task option(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(option_names()))}"
        )
    opts = TaskOptions(**options)

    def wrap(fn: Callable[..., Any], name: str | None) -> FunctionTask:
        if not callable(fn):
            raise TypeError(f"@stem.task needs a function, got {fn!r}")
        resolved = name or f"{fn.__module__}.{fn.__qualname__}"
        return FunctionTask(fn, resolved, opts)

    if callable(name_or_fn):
        return wrap(name_or_fn, None)
    name = name_or_fn

    def decorator(fn: Callable[..., Any]) -> FunctionTask:
        return wrap(fn, name)

    return decorator
