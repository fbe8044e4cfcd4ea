"""Every contract check, run against every backend (see checks.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio.testing

from . import checks, checks_schedules, checks_workflows
from .harness import Harness

CHECKS: dict[str, Callable[[Harness], Awaitable[None]]] = {
    name[len("check_") :]: fn
    for name, fn in vars(checks).items()
    if name.startswith("check_") and callable(fn)
}
CHECKS.update(
    (name[len("check_") :], fn)
    for name, fn in vars(checks_schedules).items()
    if name.startswith("check_") and callable(fn)
)
CHECKS.update(
    (name[len("check_") :], fn)
    for name, fn in vars(checks_workflows).items()
    if name.startswith("check_") and callable(fn)
)


@pytest.mark.parametrize("check", list(CHECKS.values()), ids=list(CHECKS))
async def test_contract(
    check: Callable[[Harness], Awaitable[None]],
    harness: Harness,
    mock_clock: trio.testing.MockClock,
) -> None:
    """The backend passes one contract check (named in the test id)."""
    await check(harness)
