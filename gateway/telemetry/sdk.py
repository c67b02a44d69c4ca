"""The OpenTelemetry SDK and OTLP exporters enter here: span factory, exporters and meter provider for one app.

Nothing here is global: everything belongs to the app that built it (no `set_tracer_provider`), so
two gateways in one process (tests) never share spans. Export runs on background threads (spans:
`span_batches.SpanBatcher`; metrics: the SDK's PeriodicExportingMetricReader): a slow or dead
collector costs dropped spans, counted in `ExportCounts`, never request latency.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.context import Context
from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, TraceIdRatioBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, TraceFlags, get_current_span

from gateway import __version__
from gateway.telemetry.encoded_batch import EncodedSpanBatch, Transport
from gateway.telemetry.histograms import LeanHistograms
from gateway.telemetry.otlp_http import HttpTransport
from gateway.telemetry.semconv import INSTRUMENTATION_NAME, SCHEMA_URL
from gateway.telemetry.settings import GRPC_PROTOCOL, OtlpTls, TelemetrySettings
from gateway.telemetry.span_export import Attrs, EventValues, ExportCounts, SpanBatch

log = logging.getLogger("lockgate.telemetry")


class _CountingExporter(SpanExporter):
    """Delegates to the real exporter and counts what reached the collector and what did not; never raises."""

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


def _otlp_span_batch(settings: TelemetrySettings, resource: Resource, counts: ExportCounts) -> SpanBatch:
    """Spans written straight into protobuf (several times cheaper than the SDK's encoder; the same bytes),
    sent over the configured transport."""
    headers = dict(settings.headers)
    assert settings.traces_endpoint is not None
    transport: Transport
    if settings.protocol == GRPC_PROTOCOL:
        from gateway.telemetry.otlp_grpc import GrpcTransport

        transport = GrpcTransport(settings.traces_endpoint, headers, settings.compression, settings.traces_tls,
                                  settings.traces_insecure)
    else:
        transport = HttpTransport(settings.traces_endpoint, headers, settings.compression, settings.traces_tls)
    return EncodedSpanBatch(transport, settings.timeout, counts, resource, SCOPE)


class _PeriodicReader(PeriodicExportingMetricReader):
    """The SDK's periodic OTLP reader, exporting Lockgate's own histograms along with the SDK's metrics."""

    def __init__(self, exporter: Any, interval_millis: float, histograms: LeanHistograms) -> None:
        super().__init__(exporter, export_interval_millis=interval_millis)
        self._histograms = histograms

    def _receive_metrics(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> None:
        super()._receive_metrics(self._histograms.add_to(metrics_data), timeout_millis, **kwargs)


def _otlp_metric_reader(settings: TelemetrySettings, histograms: LeanHistograms) -> MetricReader:
    headers = dict(settings.metrics_headers) or None
    exporter: Any
    if settings.metrics_protocol == GRPC_PROTOCOL:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetrics

        from gateway.telemetry.otlp_grpc import grpc_credentials

        exporter = GrpcMetrics(endpoint=settings.metrics_endpoint, headers=headers, timeout=int(settings.timeout),
                               credentials=grpc_credentials(settings.metrics_tls))
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetrics

        tls = settings.metrics_tls
        exporter = HttpMetrics(endpoint=settings.metrics_endpoint, headers=headers, timeout=settings.timeout,
                               certificate_file=tls.certificate, client_certificate_file=tls.client_certificate,
                               client_key_file=tls.client_key, session=_session(tls))
    return _PeriodicReader(exporter, settings.metrics_export_interval * 1000, histograms)


def _session(tls: OtlpTls) -> Any:
    """The HTTP session of the SDK's metric exporter: one whose CA file, when one is configured, wins.

    requests lets REQUESTS_CA_BUNDLE (often set machine-wide) override a session's own `verify`
    (psf/requests#3829), so the collector's private CA was ignored and every export failed
    verification. Without a CA file configured: None, the SDK's own session.
    """
    if tls.certificate is None:
        return None
    import requests

    class CollectorSession(requests.Session):
        def merge_environment_settings(self, *args: Any, **kwargs: Any) -> Any:
            merged = super().merge_environment_settings(*args, **kwargs)
            merged["verify"] = tls.certificate
            return merged

    return CollectorSession()


def telemetry_resource(settings: TelemetrySettings) -> Resource:
    attributes: dict[str, str] = {"service.version": __version__, **dict(settings.resource_attributes)}
    attributes["service.name"] = settings.service_name
    return Resource.create(attributes)


SCOPE = InstrumentationScope(INSTRUMENTATION_NAME, __version__, SCHEMA_URL)
_SAMPLED, _NOT_SAMPLED = TraceFlags(TraceFlags.SAMPLED), TraceFlags(TraceFlags.DEFAULT)
_LOW_64 = TraceIdRatioBased.TRACE_ID_LIMIT


class SpanFactory:
    """Makes span contexts and ids, sampled or not.

    The sampler is the SDK's `ParentBased(TraceIdRatioBased)`; a request without a caller's context
    (nearly all) takes the same decision inline: the ratio sampler's test on the trace id's low 64
    bits. Spans themselves are written once a request is over (`SpanRecorder.build`).
    """

    def __init__(self, sample_ratio: float) -> None:
        self._sampler = ParentBased(TraceIdRatioBased(sample_ratio))
        self._bound = TraceIdRatioBased.get_bound_for_rate(sample_ratio)
        self._bits = random.getrandbits

    def root(self, incoming: Context | None, name: str) -> tuple[SpanContext, SpanContext | None]:
        """The SERVER span's context (sampled or not) and the caller's span context, if any.

        `incoming` None: the caller sent no trace context (the common case, decided without the SDK).
        """
        if incoming is not None:
            parent = get_current_span(incoming).get_span_context()
            if parent.is_valid:
                result = self._sampler.should_sample(incoming, parent.trace_id, name, SpanKind.SERVER)
                flags = _SAMPLED if result.decision is Decision.RECORD_AND_SAMPLE else _NOT_SAMPLED
                return SpanContext(parent.trace_id, self.span_id(), False, flags, result.trace_state), parent
        trace_id = self._bits(128) or 1
        flags = _SAMPLED if trace_id & _LOW_64 < self._bound else _NOT_SAMPLED
        return SpanContext(trace_id, self.span_id(), False, flags), None

    def span_id(self) -> int:
        return self._bits(64) or 1


class ReadableSpanWriter:
    """A `SpanWriter` making the SDK's `ReadableSpan`s (for an SDK exporter: tests' in-memory one).

    Attribute values are Lockgate's own and already of valid types: the finished spans are made
    directly, without the live span machinery (a lock and a validation per attribute).
    """

    def __init__(self, resource: Resource, scope: InstrumentationScope) -> None:
        self._resource = resource
        self._scope = scope
        self.spans: list[ReadableSpan] = []

    def span(
        self, trace: SpanContext, span_id: int, parent: SpanContext | None, name: str, kind: SpanKind,
        start: int, end: int, fixed: Attrs | None, attributes: Attrs, events: Sequence[EventValues], status: Status,
    ) -> None:
        context = trace if trace.span_id == span_id else SpanContext(
            trace.trace_id, span_id, False, trace.trace_flags, trace.trace_state
        )
        self.spans.append(ReadableSpan(
            name, context, parent, self._resource, {**fixed, **attributes} if fixed else attributes,
            [Event(n, a, t) for n, a, t in events], kind=kind, status=status, start_time=start, end_time=end,
            instrumentation_scope=self._scope,
        ))


class SdkSpanBatch:
    """A `SpanBatch` for an SDK exporter: `ReadableSpan`s, exported together."""

    def __init__(self, exporter: SpanExporter, resource: Resource, scope: InstrumentationScope) -> None:
        self._exporter = exporter  # counts what it exports (_CountingExporter)
        self._writer = ReadableSpanWriter(resource, scope)

    @property
    def writer(self) -> ReadableSpanWriter:
        return self._writer

    @property
    def pending(self) -> int:
        return len(self._writer.spans)

    def mark(self) -> tuple[int, int]:
        return len(self._writer.spans), len(self._writer.spans)

    def rollback(self, mark: tuple[int, int]) -> None:
        del self._writer.spans[mark[0]:]

    def send(self) -> None:
        spans = self._writer.spans
        if spans:
            self._writer.spans = []
            self._exporter.export(spans)

    def finish_by(self, deadline: float) -> None:
        """Nothing to set: an SDK exporter's `shutdown` ends a send in progress."""

    def shutdown(self) -> None:
        self._exporter.shutdown()


@dataclass(slots=True)
class Tracing:
    factory: SpanFactory
    counts: ExportCounts
    # Where spans go: none (tracing on with nowhere to send: spans are dropped unbuilt), an OTLP batch
    # sent from a background thread, or (an exporter given: tests' in-memory one) each request's
    # spans exported at once on the caller's thread.
    batch: SpanBatch | None = None
    batched: bool = False


def build_tracing(settings: TelemetrySettings, exporter: SpanExporter | None = None) -> Tracing:
    """How this app's spans are made and where they go. A given `exporter` (tests) is exported to at once;
    otherwise the OTLP exporter, or none (tracing on with nowhere to send: spans are dropped unbuilt)."""
    counts = ExportCounts()
    resource = telemetry_resource(settings)
    factory = SpanFactory(settings.sample_ratio)
    if exporter is not None:
        return Tracing(factory, counts, SdkSpanBatch(_CountingExporter(exporter, counts), resource, SCOPE))
    if settings.traces_endpoint:
        return Tracing(factory, counts, _otlp_span_batch(settings, resource, counts), batched=True)
    return Tracing(factory, counts)


@dataclass(slots=True)
class Metering:
    meter: Meter
    shutdown: Callable[[float], None]  # within so many seconds


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
    return Metering(meter, lambda seconds: provider.shutdown(timeout_millis=seconds * 1000))
