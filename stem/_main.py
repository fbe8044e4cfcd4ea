"""``trio.run(stem.main)``: a whole service from environment configuration."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, nullcontext
from typing import Any, TypeVar

import trio

from ._app import App
from ._client import Client
from ._config import Settings, load_app, with_env_signing
from ._errors import ConfigError
from ._instrument import Instrumentation
from ._logging import configure_logging
from ._redact import redact
from ._text import escape_control
from .actors import SupervisorEscalation
from .actors._worker import Worker

logger = logging.getLogger("stem.main")
E = TypeVar("E", bound=BaseException)


async def main(
    settings: Settings | None = None, *, environ: Mapping[str, str] | None = None
) -> None:
    """Run a worker (and the rest of the runtime) until SIGINT or SIGTERM.

    Configuration comes from ``STEM_APP``, ``STEM_BROKER_URL``,
    ``STEM_QUEUES``, ``STEM_QUEUE_ORDER``, ``STEM_CONCURRENCY``,
    ``STEM_GRACE_PERIOD``,
    ``STEM_PREFETCH``, ``STEM_BEAT``, ``STEM_METRICS_PORT``,
    ``STEM_SIGNING_KEYS`` (docs/security.md); logs go to stderr
    (``STEM_LOG_LEVEL``, ``STEM_LOG_FORMAT=json``) unless the application
    configured logging itself. On a signal
    it stops taking work, lets running tasks finish within the grace period
    and hands the rest back to their queues. A configuration error prints one
    line naming the variable and exits with status 2.
    """
    try:
        settings = settings or Settings.from_env(environ)
        app = with_env_signing(load_app(settings.app), environ)
        assert app is not None
        metrics_port = _metrics_port(os.environ if environ is None else environ)
    except ConfigError as exc:
        print(f"stem: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if not logging.getLogger().handlers:
        # A service should say what it does; an application that configured
        # logging itself keeps its own setup.
        env = os.environ if environ is None else environ
        configure_logging(
            env.get("STEM_LOG_LEVEL", "INFO").upper(),
            json=env.get("STEM_LOG_FORMAT", "text").lower() == "json",
        )
    try:
        await serve(settings, app, metrics_port=metrics_port)
    except Exception as exc:
        config = _find(exc, ConfigError)
        if config is None:
            raise
        # A backend that refuses the URL (no such database, bad port): one
        # line, as for a bad variable.
        print(f"stem: {escape_control(str(config))}", file=sys.stderr)
        raise SystemExit(2) from None


def _metrics_port(environ: Mapping[str, str]) -> int | None:
    """``STEM_METRICS_PORT``: serve Prometheus metrics on this port."""
    raw = environ.get("STEM_METRICS_PORT", "").strip()
    if not raw:
        return None
    try:
        port = int(raw)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ConfigError(f"STEM_METRICS_PORT must be a port number, got {raw!r}")
    return port


async def serve(
    settings: Settings, app: object, *, metrics_port: int | None = None
) -> None:
    """Run a worker for ``app`` until SIGINT/SIGTERM, or until the worker
    stops by itself (``stem control shutdown``): both return normally (exit
    status 0). With ``metrics_port`` (0 picks a free port) the task metrics
    are served for Prometheus at ``http://host:port/metrics``; with
    OpenTelemetry's global tracer provider set, tasks are traced too.

    When the supervisor gives up on a crashing actor, a critical log line
    says why and ``SystemExit(1)`` ends the process: a live process doing no
    work is worse than a restart by the process manager."""
    assert isinstance(app, App)
    try:
        await _serve(settings, app, metrics_port)
    except BaseException as exc:
        escalation = _find(exc, SupervisorEscalation)
        if escalation is None:
            raise
        logger.critical(
            "the runtime gave up, exiting with status %d: %s",
            EXIT_GAVE_UP,
            escalation,
        )
        raise SystemExit(EXIT_GAVE_UP) from None


#: Exit status of a service whose supervisor gave up on a crashing actor.
EXIT_GAVE_UP = 1


def _find(exc: BaseException, kind: type[E]) -> E | None:
    """The first ``kind`` in ``exc`` (unwrapping exception groups)."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _find(inner, kind)
            if found is not None:
                return found
    return None


async def _serve(settings: Settings, app: App, metrics_port: int | None) -> None:
    async with AsyncExitStack() as stack:
        instrumentation = await _open_instrumentation(
            stack, metrics_port, settings.worker.metrics_host
        )
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with (
                Client(
                    settings.broker_url,
                    app=app,
                    instrumentation=instrumentation,
                    max_message_bytes=settings.worker.max_message_bytes,
                ) as client,
                trio.open_nursery() as extras,
            ):
                if client.instrumentation.enabled:
                    await _start_metric_feeds(client, app, settings, extras)
                async with (
                    _maybe_beat(client, settings),
                    client.worker(config=settings.worker) as worker,
                ):
                    logger.info(
                        "stem worker %s ready on %s, queues %s, concurrency %d",
                        worker.config.worker_id,
                        redact(settings.broker_url),
                        ",".join(settings.queues),
                        settings.concurrency,
                    )
                    _log_signing(app)
                    await _until_stopped(signals, worker)
                extras.cancel_scope.cancel()


def _log_signing(app: App) -> None:
    """Say how this node signs and what it accepts (key ids, never keys)."""
    signing = app.signing
    if signing is None:
        logger.info("signing: off (tasks and control requests are not signed)")
        return
    active = signing.signing_key
    if active is None:
        logger.warning(
            "signing: this node holds only public keys, so the tasks it "
            "publishes itself (chain and chord follow-ups, workflow "
            "activities, beat fires; retries keep the producer's signature) "
            "go out unsigned and workers requiring signatures dead-letter "
            "them: give it a key of its own"
        )
    logger.info(
        "signing: signs with %s; verifies %s; unsigned messages are %s",
        f"key {active.id!r}" if active is not None else "no key",
        ", ".join(signing.key_ids()),
        "refused" if signing.require_signed else "accepted",
    )


async def _until_stopped(signals: Any, worker: Worker) -> None:
    """Return on SIGINT/SIGTERM, or once the worker stopped by itself (a
    remote ``shutdown``): either way the service then shuts down."""
    async with trio.open_nursery() as waiting:

        async def on_signal() -> None:
            async for signum in signals:
                logger.info(
                    "received %s, shutting down gracefully",
                    signal.Signals(signum).name,
                )
                waiting.cancel_scope.cancel()

        async def on_stop() -> None:
            await worker.wait_stopped()
            logger.info(
                "worker %r stopped (remote shutdown); shutting down",
                worker.config.worker_id,
            )
            waiting.cancel_scope.cancel()

        waiting.start_soon(on_signal)
        waiting.start_soon(on_stop)


def _maybe_beat(client: Client, settings: Settings) -> AbstractAsyncContextManager[Any]:
    """The scheduler when ``STEM_BEAT`` says so: ``auto`` (the default) runs
    it when the app registers schedule entries, ``on`` always (it then fires
    entries added with ``stem schedule add``), ``off`` never."""
    if settings.beat == "on" or (settings.beat == "auto" and client.app.schedules):
        logger.info("beat runs here (STEM_BEAT=%s)", settings.beat)
        return client.beat()
    return nullcontext()


async def _open_instrumentation(
    stack: AsyncExitStack, metrics_port: int | None, host: str
) -> Instrumentation | None:
    """None (the client's default) unless a metrics endpoint is asked for."""
    if metrics_port is None:
        return None
    try:
        from ._otel import OtelInstrumentation, tracing_configured
        from ._prometheus import open_metrics_endpoint
    except ImportError as exc:
        raise ConfigError(
            f"--metrics-port needs the otel extra (pip install 'trio-stem[otel]'): "
            f"{exc}"
        ) from exc
    endpoint = await stack.enter_async_context(
        open_metrics_endpoint(metrics_port, host)
    )
    logger.info("metrics for Prometheus at %s", endpoint.url)
    return OtelInstrumentation(
        meter_provider=endpoint.meter_provider, tracing=tracing_configured()
    )


async def _start_metric_feeds(
    client: Client, app: App, settings: Settings, nursery: trio.Nursery
) -> None:
    """Count revocations and dead letters from signals; poll queue depths."""
    from ._metrics import poll_queue_depths  # needs the otel extra

    watch = getattr(client.instrumentation, "watch", None)
    if watch is not None:
        watch(app.signals)
    await nursery.start(poll_queue_depths, client, list(settings.queues))
