"""The dashboard's worker actions with signing: a dashboard serving an app
with the workers' keys pauses a worker that requires signatures; one without
keys is ignored by it (and says the worker did not answer)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import trio

import stem
from stem.dashboard import DashboardAuth, serve

ADMIN = "admin-token-0123456789"
KEY = stem.SigningKey.hmac("dash-1", b"the dashboard test's own secret!")


async def _pause(base: str, worker_id: str) -> str:
    """POST the pause action as an admin (with the page's CSRF token);
    returns the redirect's message."""
    headers = {"Authorization": f"Bearer {ADMIN}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=20) as http:
        page = (await http.get("/workers")).text
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
        assert csrf is not None
        done = await http.post(
            f"/workers/{worker_id}/pause", data={"csrf": csrf.group(1)}
        )
        assert done.status_code == 303, done.text
        return str(done.headers["location"])


async def test_dashboard_actions_are_signed_with_the_apps_keys(tmp_path: Path) -> None:
    """Without keys the dashboard's pause is ignored by a strict worker; with
    the app's keys (as STEM_SIGNING_KEYS gives `stem dashboard`) it is
    obeyed."""
    url = f"sqlite:///{tmp_path}/dash.db"
    strict = stem.App(signing=stem.Signing(keys=[KEY], require_signed=True))
    auth = DashboardAuth(admin_tokens=(ADMIN,))
    with trio.fail_after(90):
        async with (
            stem.Client.from_url(url, app=strict) as client,
            client.worker(worker_id="w1", queues=["default", "mail"]) as worker,
            trio.open_nursery() as nursery,
        ):
            unsigned = await nursery.start(
                lambda task_status: serve(url, auth, port=0, task_status=task_status)
            )
            signed = await nursery.start(
                lambda task_status: serve(
                    url, auth, port=0, app=strict, task_status=task_status
                )
            )
            refused = await _pause(unsigned[0], "w1")
            assert "no+answer" in refused and "error=1" in refused
            assert worker.worker_statistics().paused == ()
            await _pause(signed[0], "w1")
            assert set(worker.worker_statistics().paused) == {"default", "mail"}
            nursery.cancel_scope.cancel()
