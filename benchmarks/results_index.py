"""What the task-listing indexes cost a result write (issue 20).

Writes --records result records (QUEUED, then RUNNING, then SUCCEEDED, as a
task's life does) in batches of --batch through ``results.set_state`` on a
fresh store: without the listing index (``results_recent`` dropped), as
shipped (that index alone), and with a ``(state, updated_at)`` index added
(as migration 7 first had it); modes interleaved, median of --runs. Prints writes/s and
the load average.

Usage: .venv/bin/python benchmarks/results_index.py [--backend sqlite]
       [--backend postgres] [--records 20000] [--batch 100] [--runs 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import stem  # noqa: E402
from benchmarks._harness import fresh_url, load, median  # noqa: E402

STATES = (stem.TaskState.QUEUED, stem.TaskState.RUNNING, stem.TaskState.SUCCEEDED)


async def _prepare(backend: Any, kind: str, statements: tuple[str, ...]) -> None:
    if kind == "sqlite":

        def run_sqlite(conn: Any) -> None:
            for sql in statements:
                conn.execute(sql.format(s=""))

        await backend.db.write(run_sqlite)
    else:
        schema = backend.config.quoted_schema + "."

        async def run(conn: Any) -> None:
            for sql in statements:
                await conn.execute(sql.format(s=schema))

        await backend.db.run(run)


#: mode -> SQL run on the fresh store first
MODES = {
    "no listing index": ("DROP INDEX {s}results_recent",),  # {s}: the schema
    "as shipped": (),
    "plus a state index": (
        "CREATE INDEX results_state ON {s}results (state, updated_at, task_id)",
        # (Postgres puts the new index in the table's schema.)
    ),
}


async def one_run(kind: str, mode: str, records: int, batch: int) -> float:
    with fresh_url(kind) as url:
        async with stem.Client.from_url(url) as client:
            if MODES[mode]:
                await _prepare(client.backend, kind, MODES[mode])
            results = client.backend.results
            start = time.perf_counter()
            for first in range(0, records, batch):
                ids = [f"t{n}" for n in range(first, min(records, first + batch))]
                for state in STATES:
                    await results.set_state(
                        [
                            stem.TaskResult(
                                task_id=i,
                                state=state,
                                name="bench.noop",
                                queue="default",
                                attempt=1,
                                updated_at=stem.now(),
                            )
                            for i in ids
                        ]
                    )
            return records * len(STATES) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgres"])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    ns = parser.parse_args()
    print(
        f"{ns.records:,} tasks x 3 result writes, batches of {ns.batch}; median "
        f"of {ns.runs} interleaved runs; load average {load()}"
    )
    for kind in ns.backend or ["sqlite", "postgres"]:
        rates: dict[str, list[float]] = {mode: [] for mode in MODES}
        for _ in range(ns.runs):
            for mode in MODES:
                rates[mode].append(trio.run(one_run, kind, mode, ns.records, ns.batch))
        bare = median(rates["no listing index"])
        print(f"{kind}:")
        for mode, values in rates.items():
            rate = median(values)
            runs = ", ".join(f"{v:,.0f}" for v in values)
            change = (rate - bare) / bare * 100
            print(f"  {mode:20} {rate:8,.0f} writes/s ({change:+5.1f}%; runs: {runs})")
    print(f"load average after: {load()}")


if __name__ == "__main__":
    main()
