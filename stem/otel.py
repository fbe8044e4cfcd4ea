"""OpenTelemetry for Stem (needs the ``otel`` extra: ``pip install
'trio-stem[otel]'``).

``import stem`` never imports OpenTelemetry; this module does. With
OpenTelemetry's global tracer provider set, clients pick
:class:`OtelInstrumentation` on their own; build one yourself to use explicit
providers::

    client = stem.Client(url, app=app, instrumentation=OtelInstrumentation(
        tracer_provider=my_tracer_provider, meter_provider=my_meter_provider))

See docs/observability.md.
"""

from ._metrics import StemMetrics as StemMetrics
from ._metrics import poll_queue_depths as poll_queue_depths
from ._otel import TRACE_HEADERS as TRACE_HEADERS
from ._otel import OtelInstrumentation as OtelInstrumentation
from ._otel import auto_instrumentation as auto_instrumentation
from ._otel import trace_headers as trace_headers
from ._prometheus import MetricsEndpoint as MetricsEndpoint
from ._prometheus import open_metrics_endpoint as open_metrics_endpoint
