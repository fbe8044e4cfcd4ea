"""stem.testing itself: the list of checks, skipping, the harness's clock rule,
the watchdog and how failures come out."""

from __future__ import annotations

import inspect
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import pytest
import trio
import trio.testing

import stem.testing
from stem.adapters.memory import MemoryBackend, open_backend
from stem.contracts import Capabilities
from stem.testing import CheckSkipped, Harness, all_checks, open_harness, run_check


def test_all_checks_lists_every_exported_check_once_in_a_fixed_order() -> None:
    """all_checks() names each exported check_* exactly once, without the
    prefix, broker checks first, the same on every call."""
    exported = {
        name: value
        for name, value in vars(stem.testing).items()
        if name.startswith("check_")
    }
    checks = all_checks()
    assert list(checks) == list(all_checks())
    assert len(checks) == len(exported)
    for name, check in checks.items():
        assert exported[f"check_{name}"] is check
        assert inspect.iscoroutinefunction(check)
        assert check.__doc__, f"check_{name} has no docstring"
    assert next(iter(checks)) == "backend_shape"
    assert list(checks)[-1].startswith("workflow_")


def test_public_surface() -> None:
    """stem.testing exports the harness API and the checks, nothing else."""
    public = {name for name in vars(stem.testing) if not name.startswith("_")}
    api = {
        "BackendFactory",
        "Check",
        "CheckSkipped",
        "Harness",
        "Pending",
        "all_checks",
        "open_harness",
        "run_check",
    }
    checks = {f"check_{name}" for name in all_checks()}
    assert public - {"pytest_plugin"} == api | checks


@asynccontextmanager
async def _without_broadcast() -> AsyncIterator[MemoryBackend]:
    async with open_backend() as backend:
        caps = attrs.evolve(backend.capabilities, name="nobroadcast", broadcast=False)
        backend.capabilities = caps
        yield backend


def test_missing_capability_skips_with_the_reason_under_pytest(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A check needing a capability the backend lacks raises pytest's skip,
    after printing the reason."""
    with pytest.raises(pytest.skip.Exception, match="lacks capability 'broadcast'"):
        run_check(stem.testing.check_broadcast_fan_out, _without_broadcast)
    assert "SKIPPED: backend 'nobroadcast' lacks capability 'broadcast'" in (
        capsys.readouterr().out
    )


@pytest.mark.parametrize("where", ["outside a pytest test", "pytest not importable"])
def test_missing_capability_raises_check_skipped_elsewhere(
    where: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Outside a pytest test, or where pytest cannot be imported, the skip is
    stem.testing.CheckSkipped, never a silent pass."""
    if where == "outside a pytest test":
        monkeypatch.delenv("PYTEST_CURRENT_TEST")
    else:
        monkeypatch.setitem(sys.modules, "pytest", None)
    with pytest.raises(CheckSkipped, match="lacks capability 'broadcast'"):
        run_check(stem.testing.check_broadcast_fan_out, _without_broadcast)
    assert "SKIPPED:" in capsys.readouterr().out


def test_run_check_passes_a_check_the_backend_meets() -> None:
    """run_check returns quietly when the check passes."""
    run_check(stem.testing.check_lock_expiry, open_backend)


def test_run_check_raises_a_failed_assert_bare() -> None:
    """A failing check's AssertionError comes out as itself, not wrapped in
    exception groups."""

    async def failing(h: Harness) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(h.advance, 1.0)
        raise AssertionError("the backend forgot")

    with pytest.raises(AssertionError, match="the backend forgot"):
        run_check(failing, open_backend)


def test_watchdog_stops_a_hung_check() -> None:
    """A check that never finishes fails with TimeoutError after the
    watchdog's real seconds."""

    async def hangs(h: Harness) -> None:
        await trio.sleep_forever()

    with pytest.raises(TimeoutError, match="still running after 0.2 real seconds"):
        run_check(hangs, open_backend, watchdog=0.2)


@pytest.mark.parametrize(
    "clock",
    [None, trio.testing.MockClock(autojump_threshold=0)],
    ids=["real", "autojump"],
)
def test_open_harness_needs_a_mock_clock_without_autojump(
    clock: trio.testing.MockClock | None,
) -> None:
    """open_harness refuses a run whose clock is not a MockClock the checks
    can drive (time must move only when a check advances it)."""

    async def main() -> None:
        async with open_harness(open_backend):
            raise AssertionError("not reached")

    with pytest.raises(RuntimeError, match="MockClock"):
        trio.run(main, clock=clock)


async def test_open_harness_inside_a_run_under_mock_clock(
    mock_clock: trio.testing.MockClock,
) -> None:
    """Inside a run under a MockClock, open_harness yields a harness whose
    advance moves that clock."""
    async with open_harness(open_backend) as h:
        assert h.clock is mock_clock
        assert isinstance(h.backend.capabilities, Capabilities)
        before = trio.current_time()
        await h.advance(5.0)
        assert trio.current_time() == before + 5.0
