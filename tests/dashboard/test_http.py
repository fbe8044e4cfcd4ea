"""The dashboard over HTTP, served by Hypercorn on Trio on a free port
against a real SQLite backend: pages show stored data, authentication is
required, the read-only role cannot act, actions need the CSRF token and
are logged."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

import stem
from stem.dashboard import DashboardAuth, serve
from tests.dashboard_app import app

ADMIN = "admin-token-0123456789"
READER = "read-token-0123456789"


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    url = f"sqlite:///{tmp_path}/dash.db"
    gate = tmp_path / "<img src=x onerror=alert(1)>"
    async with stem.Client.from_url(url, app=app) as client:
        async with client.worker(concurrency=2):
            ok = await client.enqueue("dash.add", {"a": 2, "b": 3})
            bad = await client.enqueue("dash.flaky", {"gate": str(gate)})
            await client.wait_for(ok, timeout=30)
            await client.wait_for(bad, timeout=30)
    auth = DashboardAuth(admin_tokens=(ADMIN,), read_tokens=(READER,))
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(
            lambda task_status: serve(url, auth, port=0, task_status=task_status)
        )
        yield {"base": bound[0], "ok": ok, "bad": bad, "url": url, "gate": gate}
        nursery.cancel_scope.cancel()


def _client(base: str, token: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(base_url=base, headers=headers, timeout=10)


async def test_pages_show_stored_tasks(site: dict[str, Any]) -> None:
    """Every page answers; the tasks page lists both tasks, a filter keeps
    the failed one, the task page shows args, value and progress, and the
    dead-letter page the failure."""
    async with _client(site["base"], READER) as http:
        for path in ("/", "/tasks", "/dead", "/workflows", "/schedules", "/workers"):
            page = await http.get(path)
            assert page.status_code == 200, (path, page.text[:300])
        tasks = (await http.get("/tasks")).text
        assert site["ok"] in tasks and site["bad"] in tasks
        failed = (await http.get("/tasks", params={"state": "failed"})).text
        assert site["bad"] in failed and site["ok"] not in failed
        detail = (await http.get(f"/tasks/{site['ok']}")).text
        assert "succeeded" in detail and "&#34;a&#34;: 2" in detail
        assert 'id="task-value">5<' in detail and 'id="task-progress"' in detail
        broken = (await http.get(f"/tasks/{site['bad']}")).text
        assert "RuntimeError" in broken and "Traceback" in broken
        dead = (await http.get("/dead")).text
        assert site["bad"] in dead
        # The error message is a producer's text: shown escaped, never as HTML.
        assert "gate &lt;img src=x onerror=alert(1)&gt; is closed" in dead
        assert "<img src=x" not in dead + broken
        overview = (await http.get("/")).text
        assert "succeeded 1" in overview and "failed 1" in overview


async def test_requests_without_a_valid_token_are_refused(
    site: dict[str, Any],
) -> None:
    """No token, a wrong token or a wrong cookie: 401 on pages, the event
    stream and actions alike; the browser gets the sign-in form."""
    async with _client(site["base"]) as http:
        for path in ("/", "/tasks", f"/tasks/{site['ok']}", "/events/stream"):
            assert (await http.get(path)).status_code == 401
        page = await http.get("/tasks", headers={"Accept": "text/html"})
        assert page.status_code == 401 and 'name="token"' in page.text
        post = await http.post("/dead/purge", data={"queue": "default"})
        assert post.status_code == 401
        wrong = await http.get("/", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        http.cookies.set("stem_dashboard", "nope")
        assert (await http.get("/")).status_code == 401
        bad_login = await http.post("/login", data={"token": "nope"})
        assert bad_login.status_code == 401


async def test_login_sets_a_cookie_that_signs_in(site: dict[str, Any]) -> None:
    """/login?token=... answers with an HttpOnly, SameSite=Strict cookie
    that then signs the browser in."""
    async with _client(site["base"]) as http:
        answer = await http.get("/login", params={"token": ADMIN})
        assert answer.status_code == 303
        cookie = answer.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert (await http.get("/tasks")).status_code == 200


async def test_actions_need_admin_and_csrf_and_are_logged(
    site: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """The read-only token cannot replay (403); the admin needs the page's
    CSRF token (403 without, or from another origin); with it the replay
    runs the task again (it now succeeds) and the action is logged."""
    form = {"queue": "default", "task_id": site["bad"]}
    async with _client(site["base"], READER) as http:
        assert (await http.post("/dead/replay", data=form)).status_code == 403
    async with _client(site["base"], ADMIN) as http:
        assert (await http.post("/dead/replay", data=form)).status_code == 403
        page = (await http.get("/dead")).text
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
        assert csrf is not None
        foreign = await http.post(
            "/dead/replay",
            data={**form, "csrf": csrf.group(1)},
            headers={"Origin": "http://evil.example"},
        )
        assert foreign.status_code == 403
        site["gate"].write_text("open")
        with caplog.at_level(logging.INFO, logger="stem.dashboard"):
            done = await http.post("/dead/replay", data={**form, "csrf": csrf.group(1)})
        assert done.status_code == 303
        assert "Replayed" in done.headers["location"]
    assert any(
        "admin-token-1" in r.getMessage() and site["bad"] in r.getMessage()
        for r in caplog.records
    )
    async with stem.Client.from_url(site["url"], app=app) as client:
        assert await client.dead_letters("default").list() == []
        async with client.worker(concurrency=1):
            result = await client.wait_for(site["bad"], timeout=30)
    assert result.state is stem.TaskState.SUCCEEDED


async def test_purge_needs_confirmation(site: dict[str, Any]) -> None:
    """Purging dead letters without ticking the confirmation changes
    nothing; with it they are gone."""
    async with _client(site["base"], ADMIN) as http:
        page = (await http.get("/dead")).text
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
        assert csrf is not None
        token = {"X-CSRF-Token": csrf.group(1)}
        first = await http.post("/dead/purge", data={"queue": "default"}, headers=token)
        assert first.status_code == 303 and "error=1" in first.headers["location"]
        assert site["bad"] in (await http.get("/dead")).text
        sure = {"queue": "default", "confirm": "yes"}
        done = await http.post("/dead/purge", data=sure, headers=token)
        assert "Purged+1" in done.headers["location"]
        assert site["bad"] not in (await http.get("/dead")).text


def _csrf(page: str) -> dict[str, str]:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found is not None
    return {"X-CSRF-Token": found.group(1)}


async def test_schedule_actions(site: dict[str, Any]) -> None:
    """The schedules page shows a stored entry with its next fire; disable
    and enable change it in the store; run now enqueues its task."""
    entry = stem.ScheduleEntry(
        "nightly-add", every=3600.0, task=stem.signature("dash.add", {"a": 1, "b": 1})
    )
    async with stem.Client.from_url(site["url"], app=app) as client:
        await client.backend.schedules.add(entry.name, entry.to_dict())
    async with _client(site["base"], ADMIN) as http:
        page = (await http.get("/schedules")).text
        assert "nightly-add" in page and "dash.add" in page and "UTC" in page
        token = _csrf(page)
        off = await http.post("/schedules/nightly-add/disable", headers=token)
        assert off.status_code == 303
        ran = await http.post("/schedules/nightly-add/run", headers=token)
        assert "Ran+schedule" in ran.headers["location"]
        bogus = await http.post("/schedules/nightly-add/explode", headers=token)
        assert bogus.status_code == 404
    async with stem.Client.from_url(site["url"], app=app) as client:
        record = await client.backend.schedules.get("nightly-add")
        assert record is not None and not record.enabled
        page_ = await client.backend.results.list_tasks(name="dash.add")  # type: ignore[attr-defined]
        assert len(page_.results) == 2  # the seeded one and the manual run


async def test_workflow_cancel_and_worker_pause(site: dict[str, Any]) -> None:
    """A waiting workflow run is listed and cancelled from its page; a live
    worker is listed and answers pause and resume."""
    run = stem.contracts.WorkflowRun(
        run_id="run-1", workflow="wf.demo", status="suspended", created_at=stem.now()
    )
    async with stem.Client.from_url(site["url"], app=app) as client:
        assert await client.backend.workflows.create_run(run)
        async with client.worker(concurrency=1, queues=["default"]):
            async with _client(site["base"], ADMIN) as http:
                listed = (await http.get("/workflows")).text
                assert "run-1" in listed and "wf.demo" in listed
                page = (await http.get("/workflows/run-1")).text
                token = _csrf(page)
                done = await http.post("/workflows/run-1/cancel", headers=token)
                assert "Cancel+requested" in done.headers["location"]
                workers = ""
                with trio.fail_after(20):
                    while "data-worker=" not in workers:
                        workers = (await http.get("/workers")).text
                        await trio.sleep(0.2)
                worker_id = re.search(r'data-worker="([^"]+)"', workers)
                assert worker_id is not None
                pause = await http.post(
                    f"/workers/{worker_id.group(1)}/pause", headers=token
                )
                assert "done" in pause.headers["location"], pause.headers
                resume = await http.post(
                    f"/workers/{worker_id.group(1)}/resume", headers=token
                )
                assert "done" in resume.headers["location"], resume.headers
        stored = await client.backend.workflows.get_run("run-1")
        assert stored is not None and stored.cancel_requested
