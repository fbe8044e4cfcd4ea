"""``trio.run(stem.main)``: a whole service from environment configuration."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Mapping

import trio

from ._config import Settings, load_app
from ._errors import ConfigError

logger = logging.getLogger("stem.main")


async def main(
    settings: Settings | None = None, *, environ: Mapping[str, str] | None = None
) -> None:
    """Run a worker (and the rest of the runtime) until SIGINT or SIGTERM.

    Configuration comes from ``STEM_APP``, ``STEM_BROKER_URL``,
    ``STEM_QUEUES``, ``STEM_CONCURRENCY``, ``STEM_GRACE_PERIOD``. On a signal
    it stops taking work, lets running tasks finish within the grace period
    and hands the rest back to their queues. A configuration error prints one
    line naming the variable and exits with status 2.
    """
    try:
        settings = settings or Settings.from_env(environ)
        app = load_app(settings.app)
    except ConfigError as exc:
        print(f"stem: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    await serve(settings, app)


async def serve(settings: Settings, app: object) -> None:
    from ._app import App
    from ._client import Client
    from ._urls import redact

    assert isinstance(app, App)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with Client.from_url(settings.broker_url, app=app) as client:
            async with client.worker(
                concurrency=settings.concurrency,
                queues=list(settings.queues),
                grace_period=settings.grace_period,
            ) as worker:
                logger.info(
                    "stem worker %s ready on %s, queues %s, concurrency %d",
                    worker.config.worker_id,
                    redact(settings.broker_url),
                    ",".join(settings.queues),
                    settings.concurrency,
                )
                async for signum in signals:
                    logger.info(
                        "received %s, shutting down gracefully",
                        signal.Signals(signum).name,
                    )
                    break
