"""Serving the dashboard with Hypercorn's Trio worker."""

from __future__ import annotations

import logging
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

import stem

from ._app import create_app
from ._auth import DashboardAuth


async def serve(
    url: str,
    auth: DashboardAuth,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    root: str = "",
    app: stem.App | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
    **backend_options: Any,
) -> None:
    """Open a client on ``url`` and serve the dashboard on ``host:port``
    until cancelled; ``task_status.started`` gets the bound addresses
    (``http://127.0.0.1:8080``; port 0 picks a free one). ``app`` is the
    client's app: with ``signing=`` its remote-control actions (pause,
    resume, shutdown) are signed, as workers requiring signatures need."""
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = logging.getLogger("stem.dashboard.access")
    config.errorlog = logging.getLogger("stem.dashboard")
    config.graceful_timeout = 1.0
    async with stem.Client.from_url(url, app=app, **backend_options) as client:
        site = create_app(client, auth, root=root)
        await hypercorn_serve(site, config, task_status=task_status)  # type: ignore[arg-type]
