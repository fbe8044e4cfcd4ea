"""The contract harness, parametrised over every backend."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import trio
import trio.testing

from .harness import Harness

BACKENDS = ["memory", "sqlite", "redis", "postgres"]

#: Real seconds after which a hung check fails instead of hanging the run.
WATCHDOG_REAL_SECONDS = 60.0


@pytest.fixture(params=BACKENDS, ids=BACKENDS)
def backend_factory(request: pytest.FixtureRequest) -> Any:
    """The ``<name>_backend_factory`` fixture of the parametrised backend."""
    name = request.param
    try:
        return request.getfixturevalue(f"{name}_backend_factory")
    except pytest.FixtureLookupError:
        reason = (
            f"the {name} adapter is not built yet "
            f"(no {name}_backend_factory fixture in tests/fixtures_{name}.py)"
        )
        print(f"SKIPPED: {reason}")
        pytest.skip(reason)


async def _watchdog(done: threading.Event) -> None:
    finished = await trio.to_thread.run_sync(
        done.wait, WATCHDOG_REAL_SECONDS, abandon_on_cancel=True
    )
    if not finished:
        raise TimeoutError(
            f"contract check still running after {WATCHDOG_REAL_SECONDS} real "
            "seconds (a wait that is never woken?)"
        )


@pytest.fixture
async def harness(
    backend_factory: Callable[[], Any], mock_clock: trio.testing.MockClock
) -> AsyncIterator[Harness]:
    """A fresh backend under the test's MockClock, with a real-time watchdog."""
    done = threading.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watchdog, done)
        try:
            async with backend_factory() as backend:
                yield Harness(backend=backend, clock=mock_clock)
        finally:
            done.set()
