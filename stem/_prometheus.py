"""A Prometheus scrape endpoint for the task metrics (``stem worker
--metrics-port``), through OpenTelemetry's Prometheus exporter.

The endpoint is prometheus_client's small HTTP server on a daemon thread; it
reads a private registry, so several endpoints (or tests) in one process
never clash. Needs the ``otel`` extra.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry, start_http_server


@attrs.frozen(kw_only=True)
class MetricsEndpoint:
    """A running endpoint: feed ``meter_provider``; scrape ``url``."""

    meter_provider: MeterProvider
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"


@asynccontextmanager
async def open_metrics_endpoint(
    port: int, host: str = "127.0.0.1"
) -> AsyncIterator[MetricsEndpoint]:
    """Serve ``/metrics`` on ``host:port`` (port 0 picks a free one) for the
    life of the block. Raises OSError at once when the port is taken."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"metrics port must be an int in 0..65535, got {port!r}")
    registry = CollectorRegistry(auto_describe=True)
    reader = PrometheusMetricReader(registry=registry)
    provider = MeterProvider(metric_readers=[reader])
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except BaseException:
        provider.shutdown()
        raise
    try:
        yield MetricsEndpoint(
            meter_provider=provider, host=host, port=int(server.server_port)
        )
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(server.shutdown)
            server.server_close()
            await trio.to_thread.run_sync(thread.join, 5.0)
            provider.shutdown()
