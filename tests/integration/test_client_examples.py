"""examples/fastapi_app.py and examples/django_app/ end to end, on SQLite and
on Redis: the endpoint enqueues, a real ``stem worker`` process runs the
task, and the endpoint reads the result (and its progress) back."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.cli_process import ROOT, STEM

EXAMPLES = ROOT / "examples"
DJANGO = EXAMPLES / "django_app"


@pytest.fixture(params=["sqlite", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/examples.db"
    value: str = request.getfixturevalue("redis_url")
    return f"{value}?namespace=e{uuid.uuid4().hex[:12]}"


@contextmanager
def stem_worker(app: str, url: str, queues: str, path: Path) -> Iterator[None]:
    """``stem worker --app APP`` in a subprocess for the block (SIGTERM at
    the end; it must exit 0)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(path), str(ROOT)])}
    env.pop("STEM_DEBUG", None)
    proc = subprocess.Popen(
        [STEM, "worker", "--app", app, "--url", url, "-Q", queues, "-c", "4"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        assert proc.returncode == 0, err


def test_fastapi_example(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """POST /reports answers 202 with a task id; GET /reports/{id}?wait=
    returns the worker's value and the final progress; bad input is a 422
    and an unknown id a 404."""
    pytest.importorskip("fastapi")
    import httpx

    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.setenv("STEM_URL", url)
    import fastapi_app

    async def main() -> dict[str, Any]:
        api = fastapi_app.api
        transport = httpx.ASGITransport(app=api)
        async with (
            api.router.lifespan_context(api),
            httpx.AsyncClient(transport=transport, base_url="http://test") as http,
        ):
            bad = await http.post("/reports", json={"month": "November"})
            assert bad.status_code == 422
            created = await http.post("/reports", json={"month": "2026-11", "rows": 5})
            assert created.status_code == 202, created.text
            task_id = created.json()["task_id"]
            queued = await http.get(f"/reports/{task_id}")
            assert queued.json()["state"] in ("queued", "running", "succeeded")
            missing = await http.get("/reports/no-such-task")
            assert missing.status_code == 404
            with stem_worker("fastapi_app:stem_app", url, "reports", EXAMPLES):
                for _ in range(6):  # up to 6 x 10 s while the worker starts
                    done = (await http.get(f"/reports/{task_id}?wait=10")).json()
                    if done["state"] == "succeeded":
                        break
            body: dict[str, Any] = done
            return body

    done = asyncio.run(main())
    assert done["state"] == "succeeded", done
    assert done["value"] == {"month": "2026-11", "rows": 5}
    assert done["progress"] == {"done": 5, "total": 5, "info": {"stage": "render"}}


def test_django_example(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Django view enqueues through stem.BlockingClient (202 and a task
    id); the status view reads the worker's result back; bad input is a
    400, an unknown id a 404."""
    pytest.importorskip("django")
    script = f"""
import json, os, sys
sys.path[:0] = [{str(DJANGO)!r}, {str(ROOT)!r}]
os.environ["DJANGO_SETTINGS_MODULE"] = "reportsite.settings"
os.environ["STEM_URL"] = {url!r}
import django
django.setup()
from django.test import Client
http = Client()
bad = http.post("/reports/", {{"month": "November"}})
assert bad.status_code == 400, bad.content
created = http.post("/reports/", {{"month": "2026-11", "rows": "4"}})
assert created.status_code == 202, created.content
task_id = created.json()["task_id"]
assert http.get("/reports/no-such-task/").status_code == 404
print(task_id, flush=True)
sys.stdin.readline()  # the test starts the worker, then says go
for _ in range(6):
    done = http.get(f"/reports/{{task_id}}/", {{"wait": "10"}}).json()
    if done["state"] == "succeeded":
        break
print(json.dumps(done), flush=True)
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    assert proc.stdin is not None
    task_id = proc.stdout.readline().strip()
    assert task_id, proc.communicate(timeout=30)[1]
    with stem_worker("reportsite.tasks:app", url, "reports", DJANGO):
        out, err = proc.communicate("go\n", timeout=120)
    assert proc.returncode == 0, err
    import json

    done = json.loads(out.strip().splitlines()[-1])
    assert done["state"] == "succeeded", done
    assert done["value"] == {"month": "2026-11", "rows": 4}
    assert done["progress"]["done"] == 4
