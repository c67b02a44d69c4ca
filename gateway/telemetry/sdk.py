"""The OpenTelemetry SDK and OTLP exporters enter here: tracer and meter providers for one app.

Nothing here is global: the providers belong to the app that built them (no `set_tracer_provider`),
so two gateways in one process (tests) never share spans. Export runs on the SDK's background
threads (BatchSpanProcessor, PeriodicExportingMetricReader): a slow or dead collector costs dropped
spans, counted in `ExportCounts`, never request latency.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.context import Context
from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, TraceFlags, Tracer, get_current_span

from gateway import __version__
from gateway.telemetry.histograms import LeanHistograms
from gateway.telemetry.otlp_http import OtlpHttpSpanExporter
from gateway.telemetry.semconv import INSTRUMENTATION_NAME, SCHEMA_URL
from gateway.telemetry.settings import GRPC_PROTOCOL, TelemetrySettings

log = logging.getLogger("lockgate.telemetry")

MAX_QUEUE = 2048


@dataclass(slots=True)
class ExportCounts:
    """Spans by fate. Updated from the export thread and the event loop; approximate under races."""

    ended: int = 0
    exported: int = 0
    failed: int = 0
    dropped: int = 0


class _CountingExporter(SpanExporter):
    """Delegates to the real exporter and counts what reached the collector and what did not."""

    def __init__(self, inner: SpanExporter, counts: ExportCounts) -> None:
        self._inner = inner
        self._counts = counts

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception:  # an exporter bug must not kill the export thread
            log.exception("span export raised")
            result = SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            self._counts.exported += len(spans)
        else:
            self._counts.failed += len(spans)
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class _CountingBatchProcessor(BatchSpanProcessor):
    """Counts spans the full queue pushes out (the SDK drops the oldest and only logs it)."""

    def __init__(self, exporter: SpanExporter, counts: ExportCounts) -> None:
        super().__init__(exporter, max_queue_size=MAX_QUEUE)
        self._counts = counts

    def on_end(self, span: ReadableSpan) -> None:
        counts = self._counts
        counts.ended += 1
        if counts.ended - counts.exported - counts.failed - counts.dropped > MAX_QUEUE:
            counts.dropped += 1
        super().on_end(span)


def _otlp_span_exporter(settings: TelemetrySettings) -> SpanExporter:
    headers = dict(settings.headers) or None
    assert settings.traces_endpoint is not None
    if settings.protocol == GRPC_PROTOCOL:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter(endpoint=settings.traces_endpoint, headers=headers, timeout=int(settings.timeout))
    # HTTP uses Lockgate's lean encoder (several times cheaper than the SDK's; same bytes on the wire).
    return OtlpHttpSpanExporter(settings.traces_endpoint, headers or {}, settings.timeout, settings.compression)


class _PeriodicReader(PeriodicExportingMetricReader):
    """The SDK's periodic OTLP reader, exporting Lockgate's own histograms along with the SDK's metrics."""

    def __init__(self, exporter: Any, interval_millis: float, histograms: LeanHistograms) -> None:
        super().__init__(exporter, export_interval_millis=interval_millis)
        self._histograms = histograms

    def _receive_metrics(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> None:
        super()._receive_metrics(self._histograms.add_to(metrics_data), timeout_millis, **kwargs)


def _otlp_metric_reader(settings: TelemetrySettings, histograms: LeanHistograms) -> MetricReader:
    headers = dict(settings.headers) or None
    exporter: Any
    if settings.protocol == GRPC_PROTOCOL:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetrics

        exporter = GrpcMetrics(endpoint=settings.metrics_endpoint, headers=headers, timeout=int(settings.timeout))
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetrics

        exporter = HttpMetrics(endpoint=settings.metrics_endpoint, headers=headers, timeout=settings.timeout)
    return _PeriodicReader(exporter, settings.metrics_export_interval * 1000, histograms)


def telemetry_resource(settings: TelemetrySettings) -> Resource:
    attributes: dict[str, str] = {"service.version": __version__, **dict(settings.resource_attributes)}
    attributes["service.name"] = settings.service_name
    return Resource.create(attributes)


SCOPE = InstrumentationScope(INSTRUMENTATION_NAME, __version__, SCHEMA_URL)
_SAMPLED, _NOT_SAMPLED = TraceFlags(TraceFlags.SAMPLED), TraceFlags(TraceFlags.DEFAULT)


class FinishedSpans:
    """Makes span contexts, and writes finished spans straight to the span processor.

    A request's spans are written once it is over, with their real start and end times: building
    them as finished `ReadableSpan`s skips the live span machinery (a lock and a validation per
    attribute), which was most of tracing's cost. Attribute values are Lockgate's own and already of
    valid types. The sampler decides for the SERVER span; its children follow it (ParentBased).
    """

    def __init__(
        self, processor: SpanProcessor, resource: Resource, scope: InstrumentationScope, sampler: Sampler
    ) -> None:
        self._processor = processor
        self._resource = resource
        self._scope = scope
        self._sampler = sampler
        self._ids = RandomIdGenerator()

    def root(self, incoming: Context, name: str) -> tuple[SpanContext, SpanContext | None]:
        """The SERVER span's context (sampled or not) and the caller's span context, if any."""
        parent = get_current_span(incoming).get_span_context()
        remote = parent if parent.is_valid else None
        trace_id = parent.trace_id if remote else self._ids.generate_trace_id()
        result = self._sampler.should_sample(incoming, trace_id, name, SpanKind.SERVER)
        flags = _SAMPLED if result.decision is Decision.RECORD_AND_SAMPLE else _NOT_SAMPLED
        return SpanContext(trace_id, self._ids.generate_span_id(), False, flags, result.trace_state), remote

    def child(self, parent: SpanContext, span_id: int | None = None) -> SpanContext:
        """A child's context: with `span_id` when one was chosen (and sent upstream) already."""
        span_id = span_id or self._ids.generate_span_id()
        return SpanContext(parent.trace_id, span_id, False, parent.trace_flags, parent.trace_state)

    @staticmethod
    def event(name: str, attributes: dict[str, Any], timestamp: int) -> Event:
        return Event(name, attributes, timestamp)

    def emit(
        self, context: SpanContext, parent: SpanContext | None, name: str, kind: SpanKind,
        attributes: dict[str, Any], start: int, end: int, status: Status, events: Sequence[Event] = (),
    ) -> None:
        self._processor.on_end(ReadableSpan(
            name, context, parent, self._resource, attributes, events, kind=kind, status=status,
            start_time=start, end_time=end, instrumentation_scope=self._scope,
        ))


@dataclass(slots=True)
class Tracing:
    tracer: Tracer
    finished: FinishedSpans
    counts: ExportCounts
    shutdown: Callable[[], None]


def build_tracing(settings: TelemetrySettings, exporter: SpanExporter | None = None) -> Tracing:
    """A tracer for this app. A given `exporter` (tests: in-memory) is exported to synchronously."""
    counts = ExportCounts()
    resource = telemetry_resource(settings)
    sampler = ParentBased(TraceIdRatioBased(settings.sample_ratio))
    provider = TracerProvider(resource=resource, sampler=sampler)
    processor: SpanProcessor
    if exporter is not None:
        processor = SimpleSpanProcessor(_CountingExporter(exporter, counts))
    elif settings.traces_endpoint:
        processor = _CountingBatchProcessor(_CountingExporter(_otlp_span_exporter(settings), counts), counts)
    else:
        processor = SpanProcessor()  # tracing on with nowhere to send: spans are made and dropped
    provider.add_span_processor(processor)
    tracer = provider.get_tracer(INSTRUMENTATION_NAME, __version__, schema_url=SCHEMA_URL)
    return Tracing(tracer, FinishedSpans(processor, resource, SCOPE, sampler), counts, provider.shutdown)


@dataclass(slots=True)
class Metering:
    meter: Meter
    shutdown: Callable[[], None]


def build_metering(
    settings: TelemetrySettings, readers: Sequence[MetricReader], histograms: LeanHistograms
) -> Metering:
    """A meter for this app; `histograms` (sharing its resource) ride along to the OTLP exporter."""
    all_readers = list(readers)
    if settings.metrics_endpoint:
        all_readers.append(_otlp_metric_reader(settings, histograms))
    # No SDK instrument is recorded per request (histograms are Lockgate's, counters observed at
    # collection), so the SDK's exemplar machinery never runs on the request path.
    provider = MeterProvider(metric_readers=all_readers, resource=histograms.resource)
    meter = provider.get_meter(INSTRUMENTATION_NAME, __version__, schema_url=SCHEMA_URL)
    return Metering(meter, provider.shutdown)
