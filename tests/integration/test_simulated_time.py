"""Simulated time costs events, not duration: under MockClock a durable
workflow sleeping a simulated day and beat over two simulated days each take
well under a second of wall time (benchmarks/simtime.py prints the figures)."""

from __future__ import annotations

import contextlib
import io
import time

import pytest
import trio
import trio.testing

from benchmarks.simtime import load

#: Generous: they take about 0.1 s here; ticking once per simulated second
#: (what this guards against) took 10 to 30 s.
BOUND_WALL_S = 5.0


@pytest.mark.parametrize(
    ("example", "expected"),
    [
        ("order_workflow.py", "result: shipped A1 from dock 7"),
        ("beat.py", "ping: 7 fires"),
    ],
)
def test_a_simulated_day_takes_well_under_a_second(example: str, expected: str) -> None:
    """The example's MockClock run prints what it promises, within the bound."""
    main = load(example)
    out = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out):
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    wall = time.perf_counter() - started
    assert expected in out.getvalue()
    assert wall < BOUND_WALL_S
