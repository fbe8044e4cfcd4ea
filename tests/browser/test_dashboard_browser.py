"""The dashboard end to end in a real browser: Debian's headless Chromium
driven by Playwright (``executable_path``, no downloaded browser), against
`stem dashboard` and a `stem worker` process on localhost, backed by SQLite
and by Redis. Screenshots are kept in tests/artifacts/."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.cli_process import ROOT, STEM

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "tests" / "artifacts"
TOKEN = "browser-test-token-0123456789"

try:
    from playwright.sync_api import Page, expect, sync_playwright
except ImportError:  # pragma: no cover - the dev extra installs it
    sync_playwright = None


def _require_browser() -> None:
    missing = []
    if sync_playwright is None:
        missing.append("the playwright package")
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    if missing:
        reason = f"browser tests need {', '.join(missing)}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


#: Seeds the backend: one task that succeeds, one that fails (dead letter),
#: run by a worker in this short-lived process; prints their ids.
SEED = r"""
import json, sys, trio, stem
sys.path.insert(0, sys.argv[3])
from tests.dashboard_app import app

async def main():
    async with stem.Client.from_url(sys.argv[1], app=app) as client:
        async with client.worker(concurrency=2):
            ok = await client.enqueue("dash.add", {"a": 2, "b": 3})
            bad = await client.enqueue("dash.flaky", {"gate": sys.argv[2]})
            for task_id in (ok, bad):
                await client.wait_for(task_id, timeout=30)
    print(json.dumps({"ok": ok, "bad": bad}))

trio.run(main)
"""


@pytest.fixture(params=["sqlite", "redis"])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/browser.db"
    server = request.getfixturevalue("redis_server")
    return f"{server.url}?namespace=br{uuid.uuid4().hex[:10]}"


def _spawn(args: list[str], log: Path) -> subprocess.Popen[str]:
    with open(log, "w") as out:
        return subprocess.Popen(
            args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True
        )


def _wait_for_line(log: Path, pattern: str, proc: subprocess.Popen[str]) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.search(pattern, log.read_text())
        if found:
            return found.group(1)
        assert proc.poll() is None, log.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} not printed: {log.read_text()}")


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def running(backend_url: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Seeded data, then a dashboard process, then a worker process."""
    _require_browser()
    gate = tmp_path / "gate"
    seeded = subprocess.run(
        [sys.executable, "-c", SEED, backend_url, str(gate), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    ids = json.loads(seeded.stdout.strip().splitlines()[-1])
    dash_log, worker_log = tmp_path / "dashboard.log", tmp_path / "worker.log"
    dashboard = _spawn(
        [STEM, "dashboard", "--url", backend_url, "--port", "0", "--token", TOKEN],
        dash_log,
    )
    worker = None
    try:
        base = _wait_for_line(
            dash_log, r"stem dashboard on (http://\S+?)/\s", dashboard
        )
        worker = _spawn(
            [STEM, "worker", "--app", "tests.dashboard_app:app", "--url", backend_url],
            worker_log,
        )
        yield {"base": base, "url": backend_url, "gate": gate, **ids}
    finally:
        if worker is not None:
            _stop(worker)
        _stop(dashboard)


@pytest.fixture
def page(running: dict[str, Any]) -> Iterator[Page]:
    assert sync_playwright is not None
    # trio-asyncio (imported by the Redis and Postgres tests in this
    # process) installs its own event loop policy; Playwright's sync API
    # needs a plain asyncio loop of its own (TRIO-NOTES.md, pitfall 10).
    policy = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    try:
        with _playwright() as browser:
            context = browser.new_context(viewport={"width": 1280, "height": 860})
            yield context.new_page()
    finally:
        asyncio.set_event_loop_policy(policy)


@contextmanager
def _playwright() -> Iterator[Any]:
    assert sync_playwright is not None
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox"]
        )
        try:
            yield browser
        finally:
            browser.close()


def _shot(page: Page, url: str, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    backend = url.split(":", 1)[0]
    page.screenshot(path=str(ARTIFACTS / f"dashboard-{backend}-{name}.png"))


def _enqueue(url: str, args: dict[str, Any]) -> str:
    done = subprocess.run(
        [STEM, "enqueue", "dash.add", "--args", json.dumps(args), "--url", url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


def test_dashboard_in_a_browser(page: Page, running: dict[str, Any]) -> None:
    """Without the token every request is refused; signed in, the pages
    show the stored tasks; a task finishing in the worker process appears
    on the open tasks page without a reload; replaying a dead letter from
    its page runs the task again, and it succeeds."""
    base, url = running["base"], running["url"]

    # Requests without the token are refused.
    answer = page.goto(f"{base}/tasks")
    assert answer is not None and answer.status == 401
    expect(page.locator("input[name=token]")).to_be_visible()
    api = page.context.request
    assert api.get(f"{base}/").status == 401
    assert api.get(f"{base}/events/stream").status == 401
    assert api.post(f"{base}/dead/replay", form={"queue": "default"}).status == 401
    wrong = api.get(f"{base}/tasks", headers={"Authorization": "Bearer wrong"})
    assert wrong.status == 401

    # Signing in lands on the overview, which shows real data.
    page.goto(f"{base}/login?token={TOKEN}")
    assert page.url.rstrip("/") == base
    expect(page.locator("h1")).to_have_text("Overview")
    expect(page.locator(".legend")).to_contain_text("succeeded 1")
    expect(page.locator(".legend")).to_contain_text("failed 1")
    expect(page.locator("#queues")).to_contain_text("default")
    expect(page.locator("#live-workers tbody tr")).to_have_count(1, timeout=15_000)
    expect(page.locator("#live-workers")).to_contain_text("default")

    # The tasks page lists the seeded tasks with their states.
    page.goto(f"{base}/tasks")
    ok_row = page.locator(f'tr[data-task="{running["ok"]}"]')
    expect(ok_row).to_contain_text("succeeded")
    expect(page.locator(f'tr[data-task="{running["bad"]}"]')).to_contain_text("failed")

    # A task finishing in the worker process appears without a reload.
    page.evaluate("window.stemNoReload = 42")
    fresh = _enqueue(url, {"a": 40, "b": 2})
    row = page.locator(f'tr[data-task="{fresh}"]')
    expect(row).to_contain_text("succeeded", timeout=30_000)
    assert page.evaluate("window.stemNoReload") == 42
    _shot(page, url, "tasks")

    # The overview's live feed shows it too, and the chart counts it.
    page.goto(base + "/")
    _enqueue(url, {"a": 1, "b": 1})
    expect(page.locator("#feed")).to_contain_text("task_succeeded", timeout=30_000)
    expect(page.locator(".legend")).to_contain_text("succeeded 3", timeout=30_000)
    _shot(page, url, "overview")

    # The task page shows args, result, progress.
    page.goto(f"{base}/tasks/{running['ok']}")
    expect(page.locator("#task-state")).to_have_text("succeeded")
    expect(page.locator("#task-args")).to_contain_text('"a": 2')
    expect(page.locator("#task-value")).to_have_text("5")
    expect(page.locator("#task-progress")).to_contain_text("1 / 1")
    _shot(page, url, "task")

    # The failed task's page shows its traceback; replaying it works.
    page.goto(f"{base}/tasks/{running['bad']}")
    expect(page.locator("#task-traceback")).to_contain_text("RuntimeError")
    _shot(page, url, "task-failed")
    page.goto(f"{base}/dead")
    dead_row = page.locator(f'#dead tr[data-task="{running["bad"]}"]')
    expect(dead_row).to_contain_text("gate gate is closed")
    _shot(page, url, "dead-letters")
    running["gate"].write_text("open")
    dead_row.locator("button.replay").click()
    expect(page.locator("#flash")).to_contain_text("Replayed")
    expect(page.locator(f'#dead tr[data-task="{running["bad"]}"]')).to_have_count(0)
    page.goto(f"{base}/tasks/{running['bad']}")
    expect(page.locator("#task-state")).to_have_text("succeeded", timeout=30_000)
    expect(page.locator("#task-value")).to_contain_text("passed the gate")
