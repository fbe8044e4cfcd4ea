"""The registry of tasks, workflows and schedules: :class:`App`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from fnmatch import fnmatchcase
from typing import Any

from ._errors import DuplicateTask, UnknownTask
from ._handler import FunctionTask, TaskHandler, task
from ._options import DEFAULT_QUEUE, check_queue_name
from ._signals import Signals
from ._signing import Signing


class App:
    """An explicit registry (there is no global one).

    ``App(tasks=[EmailTask(), generate], workflows=[...], schedules=[...])``.
    Task names must be unique; ``app.task(...)`` is a decorator that makes and
    registers a task in one step.

    ``routes={"reports.*": "slow", "email.send": "mail"}`` sends tasks whose
    name matches a glob (``fnmatch``, case-sensitive; the first matching
    pattern in order wins) to a queue, as Celery's ``task_routes``. The queue
    a call lands on: enqueue's ``queue=`` (or a signature's), else the task's
    own ``TaskOptions(queue=...)`` when it names one other than "default",
    else the first matching route, else "default". Routes also apply to task
    names this app does not register (a producer-only app). Invalid routes
    raise TypeError/ValueError here.

    ``signing=stem.Signing(...)`` signs what this app's clients publish and
    verifies what its workers run (docs/security.md).
    """

    def __init__(
        self,
        tasks: Iterable[TaskHandler[Any]] = (),
        *,
        workflows: Iterable[Any] = (),
        schedules: Iterable[Any] = (),
        routes: Mapping[str, str] | None = None,
        name: str = "stem",
        signing: Signing | None = None,
    ) -> None:
        if signing is not None and not isinstance(signing, Signing):
            raise TypeError(f"signing must be a stem.Signing, got {signing!r:.80}")
        self.name = name
        #: (glob, queue) pairs, in the order given
        self.routes: tuple[tuple[str, str], ...] = check_routes(routes)
        #: the keys and policy of signed messages (None: nothing is signed)
        self.signing = signing
        #: lifecycle signals: ``app.signals.task_failed.connect(fn)``
        self.signals = Signals()
        self._tasks: dict[str, TaskHandler[Any]] = {}
        self._workflows: dict[str, dict[int, Any]] = {}
        self._schedules: dict[str, Any] = {}
        for handler in tasks:
            self.register(handler)
        for workflow in workflows:
            self.register_workflow(workflow)
        for entry in schedules:
            self.add_schedule(entry)

    # -- tasks -------------------------------------------------------------

    def register(self, handler: TaskHandler[Any]) -> TaskHandler[Any]:
        """Register a task handler instance; returns it."""
        if isinstance(handler, type) and issubclass(handler, TaskHandler):
            raise TypeError(
                f"register an instance, not the class: tasks=[{handler.__name__}()]"
            )
        if not isinstance(handler, TaskHandler):
            raise TypeError(
                f"{handler!r} is not a task: "
                "subclass stem.TaskHandler or use @stem.task"
            )
        name = handler.task_name
        handler.task_options  # noqa: B018 - validates the options type now
        existing = self._tasks.get(name)
        if existing is not None and existing is not handler:
            raise DuplicateTask(
                f"a task named {name!r} is already registered: {existing!r}"
            )
        self._tasks[name] = handler
        return handler

    def task(
        self, name: str | None = None, /, **options: Any
    ) -> Callable[[Callable[..., Any]], FunctionTask]:
        """Decorator: ``@app.task("name", max_retries=3)``."""
        make = task(name, **options)

        def decorator(fn: Callable[..., Any]) -> FunctionTask:
            handler = make(fn)
            self.register(handler)
            return handler

        return decorator

    @property
    def tasks(self) -> Mapping[str, TaskHandler[Any]]:
        return dict(self._tasks)

    def find_task(self, name: str) -> TaskHandler[Any] | None:
        """The handler registered as ``name``, or None."""
        return self._tasks.get(name)

    def get_task(self, name: str) -> TaskHandler[Any]:
        """The handler registered as ``name``; UnknownTask otherwise."""
        try:
            return self._tasks[name]
        except KeyError:
            raise UnknownTask(f"no task named {name!r} is registered") from None

    def has_task(self, name: str) -> bool:
        return name in self._tasks

    def queue_for(self, name: str) -> str:
        """The queue a call of task ``name`` lands on when enqueue names
        none: the task's own queue option if it is not "default", else the
        first route whose glob matches ``name``, else "default"."""
        handler = self._tasks.get(name)
        if handler is not None:
            own = handler.task_options.queue
            if own != DEFAULT_QUEUE:
                return own
        for pattern, queue in self.routes:
            if fnmatchcase(name, pattern):
                return queue
        return DEFAULT_QUEUE

    def __iter__(self) -> Iterator[TaskHandler[Any]]:
        return iter(self._tasks.values())

    # -- workflows and schedules (their modules add behaviour) -------------

    def register_workflow(self, workflow: Any) -> Any:
        """Register a workflow script. Several versions of one name may be
        registered side by side (new runs start on the highest); one
        version of a name only once."""
        name = getattr(workflow, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"{workflow!r} is not a workflow (stem.WorkflowScript)")
        version = getattr(workflow, "version", 1)
        versions = self._workflows.setdefault(name, {})
        existing = versions.get(version)
        if existing is not None and existing is not workflow:
            raise DuplicateTask(
                f"version {version} of workflow {name!r} is already registered"
            )
        versions[version] = workflow
        return workflow

    @property
    def workflows(self) -> Mapping[str, Any]:
        """Each workflow name's newest registered version (the one new runs
        start on)."""
        return {name: v[max(v)] for name, v in self._workflows.items()}

    @property
    def workflow_versions(self) -> Mapping[str, Mapping[int, Any]]:
        """Every registered version of each workflow: name -> version ->
        script."""
        return {name: dict(v) for name, v in self._workflows.items()}

    def add_schedule(self, entry: Any) -> Any:
        name = getattr(entry, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"{entry!r} is not a schedule entry (stem.ScheduleEntry)")
        if name in self._schedules and self._schedules[name] is not entry:
            raise DuplicateTask(
                f"a schedule entry named {name!r} is already registered"
            )
        self._schedules[name] = entry
        return entry

    @property
    def schedules(self) -> Mapping[str, Any]:
        return dict(self._schedules)

    def with_signing(self, signing: Signing | None) -> App:
        """A copy of this app (same tasks, workflows, schedules, routes and
        signals) that signs and verifies with ``signing``."""
        copy = App(name=self.name, signing=signing)
        copy.routes = self.routes
        copy.signals = self.signals
        copy._tasks = dict(self._tasks)
        copy._workflows = {name: dict(v) for name, v in self._workflows.items()}
        copy._schedules = dict(self._schedules)
        return copy

    def __repr__(self) -> str:
        return f"<App {self.name!r}: {len(self._tasks)} tasks>"


def check_routes(routes: object) -> tuple[tuple[str, str], ...]:
    """``routes`` as (glob, queue) pairs; TypeError/ValueError saying what
    is wrong with an invalid one."""
    if routes is None:
        return ()
    if not isinstance(routes, Mapping):
        raise TypeError(
            "routes must be a mapping of task-name glob to queue, e.g. "
            f'{{"reports.*": "slow"}}; got {type(routes).__name__}'
        )
    checked: list[tuple[str, str]] = []
    for pattern, queue in routes.items():
        if (
            not isinstance(pattern, str)
            or not pattern
            or len(pattern) > 200
            or not pattern.isprintable()
        ):
            raise ValueError(
                f"routes: {pattern!r:.60} is not a task-name glob (1-200 "
                "printable characters, e.g. 'reports.*')"
            )
        try:
            checked.append((pattern, check_queue_name(queue)))
        except ValueError as exc:
            raise ValueError(f"routes[{pattern!r}]: {exc}") from None
    return tuple(checked)


def coerce_app(
    app: App | None,
    tasks: Iterable[TaskHandler[Any]] | None,
    workflows: Iterable[Any] | None = None,
    schedules: Iterable[Any] | None = None,
) -> App:
    """An App from ``app=`` or the ``tasks=``/``workflows=``/``schedules=``
    shortcuts (not both)."""
    if app is not None:
        if tasks or workflows or schedules:
            raise TypeError(
                "pass either app= or tasks=/workflows=/schedules=, not both"
            )
        if not isinstance(app, App):
            raise TypeError(f"app must be a stem.App, got {app!r}")
        return app
    return App(tasks or (), workflows=workflows or (), schedules=schedules or ())
