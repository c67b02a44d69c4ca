"""The telemetry component one app owns: tracer, meter, span recorder, metrics, `/metrics` endpoint.

Built in `create_app` from the runtime config and the environment; `shutdown()` (the app's lifespan
end) flushes what is queued. Tracing off means `spans is None`: the middleware then creates no
span at all.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.config.runtime import RuntimeConfig
from gateway.telemetry.attributes import DeploymentAttributes
from gateway.telemetry.histograms import LeanHistograms
from gateway.telemetry.metrics import GatewayMetrics
from gateway.telemetry.otlp_encode import NATIVE
from gateway.telemetry.prometheus import PrometheusEndpoint
from gateway.telemetry.sdk import SCOPE, build_metering, build_tracing, telemetry_resource
from gateway.telemetry.settings import TelemetrySettings, resolve
from gateway.telemetry.span_batches import DiscardedSpans, ImmediateSpans, SpanBatcher
from gateway.telemetry.span_export import ExportCounts
from gateway.telemetry.spans import SpanRecorder

log = logging.getLogger("lockgate.telemetry")

# How long a stopping gateway waits for its collector. A healthy one takes the last spans in
# milliseconds; one that is down or hung held every restart up by ~22 s of OTLP retries before.
SHUTDOWN_SECONDS = 5.0
# Of which the metrics' last export gets (the spans' last batch the rest): a lost final export of
# cumulative counters costs a minute's increments on a dashboard, lost spans a trace each.
METRICS_SHUTDOWN_SECONDS = 1.0


class Telemetry:
    def __init__(
        self,
        config: RuntimeConfig,
        environ: Mapping[str, str] | None = None,
        span_exporter: Any = None,
    ) -> None:
        """`span_exporter` (an SDK SpanExporter, e.g. in-memory in tests) turns tracing on and receives
        every span synchronously instead of the OTLP exporter."""
        settings = resolve(config.telemetry, os.environ if environ is None else environ)
        self.settings: TelemetrySettings = settings
        self.capture = settings.capture_content
        self.old_http = settings.stability.old_http
        self.propagator = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
        deployments = DeploymentAttributes(config)
        # What stops each exporter, given the seconds it may take: spans first, then metrics.
        self._shutdowns: list[tuple[Callable[[float], None], float]] = []
        self.recorder: SpanRecorder | None = None
        self.spans: SpanBatcher | ImmediateSpans | DiscardedSpans | None = None
        self.counts: ExportCounts | None = None
        if settings.tracing or span_exporter is not None:
            tracing = build_tracing(settings, span_exporter)
            self.counts = tracing.counts
            self.recorder = recorder = SpanRecorder(
                tracing.factory, deployments, config.secrets(), settings.capture_content)
            if tracing.batch is None:
                self.spans = DiscardedSpans()
            elif tracing.batched:
                self.spans = SpanBatcher(
                    recorder.build, tracing.batch, tracing.counts,
                    settings.batch_delay, settings.max_batch, settings.max_queue,
                )
            else:
                self.spans = ImmediateSpans(recorder.build, tracing.batch, tracing.counts)
            self._shutdowns.append((self.spans.shutdown, SHUTDOWN_SECONDS - METRICS_SHUTDOWN_SECONDS))
        self.prometheus: PrometheusEndpoint | None = None
        self.metrics: GatewayMetrics | None = None
        if settings.metrics:
            histograms = LeanHistograms(telemetry_resource(settings), SCOPE)
            self.prometheus = PrometheusEndpoint(histograms) if settings.prometheus else None
            metering = build_metering(settings, [self.prometheus.reader] if self.prometheus else [], histograms)
            self.metrics = GatewayMetrics(metering.meter, histograms, deployments, self.counts)
            self._shutdowns.append((metering.shutdown, METRICS_SHUTDOWN_SECONDS))

    def describe(self) -> str:
        s = self.settings
        # Which span writer: without a C compiler at install, spans are written in Python (dearer).
        writer = "spans written in C" if NATIVE else "spans written in Python: the C writer was not built"
        tracing = f"tracing to {_shown(s.traces_endpoint)} ({s.protocol}, {writer})" \
            if self.recorder and s.traces_endpoint else ("tracing on" if self.recorder else "tracing off")
        metrics = "metrics off" if not self.metrics else "metrics on" + (" (GET /metrics)" if self.prometheus else "")
        return f"telemetry: {tracing}, {metrics}, service.name={s.service_name}"

    def shutdown(self) -> None:
        """Flush and stop the exporters, giving up on the collector after `SHUTDOWN_SECONDS`; called once."""
        counts = self.counts
        undelivered = counts.failed + counts.dropped if counts is not None else 0
        for stop, seconds in self._shutdowns:
            try:
                stop(seconds)
            except Exception:  # a collector's trouble must not break the gateway's shutdown
                log.warning("telemetry shutdown failed", exc_info=True)
        self._shutdowns.clear()
        if counts is not None and counts.failed + counts.dropped > undelivered:
            log.warning("telemetry: %d spans could not be delivered at shutdown (collector %s)",
                        counts.failed + counts.dropped - undelivered, _shown(self.settings.traces_endpoint))


def _shown(endpoint: str | None) -> str:
    """An endpoint for the log: scheme, host, port and path; never credentials or a query (a token)."""
    if not endpoint:
        return "-"
    parts = urlsplit(endpoint)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"
