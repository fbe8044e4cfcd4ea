"""The whole contract suite: every check by name, and running one."""

from __future__ import annotations

import inspect
from types import ModuleType

import trio
import trio.testing

from . import (
    _checks_broker,
    _checks_events,
    _checks_hostile,
    _checks_schedules,
    _checks_signing,
    _checks_stores,
    _checks_tasks,
    _checks_workflows,
)
from ._harness import WATCHDOG_REAL_SECONDS, BackendFactory, Check, open_harness

#: The modules holding checks, in the order :func:`all_checks` lists them.
_MODULES: tuple[ModuleType, ...] = (
    _checks_broker,
    _checks_hostile,
    _checks_stores,
    _checks_events,
    _checks_tasks,
    _checks_signing,
    _checks_schedules,
    _checks_workflows,
)
_PREFIX = "check_"


def _checks_of(module: ModuleType) -> dict[str, Check]:
    found: dict[str, Check] = {}
    for name, value in vars(module).items():
        if (
            name.startswith(_PREFIX)
            and inspect.iscoroutinefunction(value)
            and value.__module__ == module.__name__
        ):
            found[name.removeprefix(_PREFIX)] = value
    return found


def all_checks() -> dict[str, Check]:
    """Every contract check, keyed by its name without ``check_``
    (``"publish_claim_ack"`` for :func:`check_publish_claim_ack`).

    The order is fixed: broker checks, then the other stores, schedules and
    workflows, each in definition order. A new dict on every call.
    """
    checks: dict[str, Check] = {}
    for module in _MODULES:
        checks.update(_checks_of(module))
    return checks


def run_check(
    check: Check,
    backend_factory: BackendFactory,
    *,
    watchdog: float | None = WATCHDOG_REAL_SECONDS,
) -> None:
    """Run ``check`` against a fresh backend opened by ``backend_factory()``,
    in a ``trio.run`` of its own under a new ``trio.testing.MockClock()`` (time
    moves only when the check advances it). Blocks until the check is done.

    Returns when the check passed; otherwise raises what it raised
    (AssertionError on a failure), or the skip exception when the backend
    lacks a capability the check needs (``pytest.skip.Exception`` under
    pytest, else :class:`CheckSkipped`; the reason is printed first), or
    TimeoutError if it still runs after ``watchdog`` real seconds.

    Call it from synchronous code such as a plain ``def test_...``: it starts
    its own Trio run, so it cannot be called inside one (use
    :func:`open_harness` there).
    """

    async def main() -> None:
        async with open_harness(backend_factory, watchdog=watchdog) as harness:
            await check(harness)

    trio.run(main, clock=trio.testing.MockClock())
