"""Lockgate's lean OTLP encoder writes exactly what the SDK's encoder writes, decoded by opentelemetry-proto."""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)

from gateway.telemetry.otlp_encode import encode_span_messages, encode_spans, wrap_span_messages


def test_the_lean_encoder_matches_the_sdk_encoder_field_for_field() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "lockgate", "replica": 3}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("lockgate", "0.1.0", schema_url="https://opentelemetry.io/schemas/1.41.0")
    other = provider.get_tracer("other-scope")
    remote = SpanContext(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, True, TraceFlags(1))
    server = tracer.start_span("POST /v1/chat/completions", context=set_span_in_context(NonRecordingSpan(remote)),
                               kind=SpanKind.SERVER, attributes={"http.response.status_code": 503, "ok": False})
    server.add_event("lockgate.retry", {"wait_s": 0.25, "deployment": "gpt-4o#0", "n": -3})
    child = tracer.start_span("chat gpt-4o", context=set_span_in_context(server), kind=SpanKind.CLIENT, attributes={
        "gen_ai.response.finish_reasons": ("stop", "length"), "gen_ai.request.temperature": 0.2,
        "gen_ai.usage.input_tokens": 2**40, "ints": (1, 2), "text": "h\u00e9llo \u2603",
    })
    child.set_status(Status(StatusCode.ERROR, "upstream said no"))
    child.end()
    server.set_status(Status(StatusCode.OK))
    server.end()
    lone = other.start_span("root", attributes={"flag": True, "one": 1, "real": 1.0, "same": 1})
    lone.end()
    spans = memory.get_finished_spans()

    ours = ExportTraceServiceRequest.FromString(encode_spans(spans))
    assert ours == sdk_encode(spans)
    # A second pass with a warm attribute cache gives the same bytes.
    cache: dict[tuple[object, ...], bytes] = {}
    assert encode_spans(spans, cache) == encode_spans(spans, cache) == encode_spans(spans)


def test_spans_encoded_in_chunks_and_wrapped_once_are_one_export_request() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "lockgate"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("lockgate", "0.1.0", schema_url="https://opentelemetry.io/schemas/1.41.0")
    for i in range(5):
        tracer.start_span(f"chat {i}", attributes={"n": i, "model": "gpt-4o"}).end()
    spans = memory.get_finished_spans()
    cache: dict[tuple[object, ...], bytes] = {}
    chunks = [encode_span_messages(spans[:2], cache), encode_span_messages(spans[2:], cache)]
    wrapped = wrap_span_messages(spans[0].resource, spans[0].instrumentation_scope, chunks, cache)
    assert ExportTraceServiceRequest.FromString(wrapped) == sdk_encode(spans)
