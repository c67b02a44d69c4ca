"""Lockgate's lean OTLP encoder writes exactly what the SDK's encoder writes, decoded by opentelemetry-proto.

Every test runs with both span writers: the C one (`_span_proto`, built at install with a C compiler)
and the Python one, which must write the same bytes.
"""

from __future__ import annotations

import os
import random
import struct
import time
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry import baggage as otel_baggage
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as Span_pb
from opentelemetry.proto.trace.v1.trace_pb2 import Status as Status_pb
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

from gateway.config import parse_config
from gateway.context import ApiRequest, Attempt
from gateway.errors import UpstreamFailure
from gateway.providers.base import Summary
from gateway.telemetry import Telemetry, otlp_encode
from gateway.telemetry.otlp_encode import SpanBytes, encode_span_messages, encode_spans, wrap_span_messages
from gateway.telemetry.sdk import SCOPE, ReadableSpanWriter
from gateway.telemetry.span_export import UNSET_STATUS as UNSET
from gateway.telemetry.spans import FinishedRequest, RequestRecord, ServerSpan
from tests.telemetry.test_decisions import CONFIG, make_request


@pytest.fixture(params=["c", "python"])
def native(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Which span writer SpanBytes uses by default in the test (encode_spans makes its own)."""
    if request.param == "c":
        if not otlp_encode.NATIVE:
            if os.environ.get("CI"):  # .ci/run installs with a compiler: there the C writer must exist
                pytest.fail("the C span writer was not built (pip install -e . with gcc and Python's headers)")
            pytest.skip("the C span writer was not built (no C compiler at install)")
        return True
    monkeypatch.setattr(SpanBytes.__init__, "__defaults__", (None, False))
    return False


def test_the_lean_encoder_matches_the_sdk_encoder_field_for_field(native: bool) -> None:
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


def test_spans_encoded_in_chunks_and_wrapped_once_are_one_export_request(native: bool) -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "lockgate"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("lockgate", "0.1.0", schema_url="https://opentelemetry.io/schemas/1.41.0")
    for i in range(5):
        tracer.start_span(f"chat {i}", attributes={"n": i, "model": "gpt-4o"}).end()
    spans = memory.get_finished_spans()
    writer = SpanBytes()
    chunks = [encode_span_messages(spans[:2], writer), encode_span_messages(spans[2:], writer)]
    wrapped = wrap_span_messages(spans[0].resource, spans[0].instrumentation_scope, chunks, writer.cache)
    assert ExportTraceServiceRequest.FromString(wrapped) == sdk_encode(spans)


def finished_requests(telemetry: Telemetry) -> list[FinishedRequest]:
    """Requests of every shape a span can take: retried with decisions (one naming a secret), streamed
    and cut mid-way, under a caller's remote parent with baggage, and failed with a 500."""
    recorder = telemetry.recorder
    assert recorder is not None
    out = []
    _, _, rich = make_request()
    rich.body.update(temperature=0.2, max_tokens=64, stop=["\n"], seed=7)
    rich.session_id, rich.user = "sess-1", "ana"
    for number, attempt in enumerate(rich.attempts, 1):
        attempt.span_id = number  # chosen when the upstream call went out, as the router does
    stream = ApiRequest(request_id="req_2", operation="chat", headers={}, body={"model": "gpt-4o", "stream": True},
                        raw=b"", model="gpt-4o", stream=True)
    deployment = rich.attempts[-1].deployment
    stream.attempts.append(Attempt(deployment, time.time(), 0.02, UpstreamFailure("stream_cut", "the stream broke"),
                                   Summary(response_id="chatcmpl-2", time_to_first_chunk=0.015), span_id=0xABC))
    incoming = set_span_in_context(NonRecordingSpan(SpanContext(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0xF067AA0BA902B7,
                                                                True, TraceFlags(1))))
    incoming = otel_baggage.set_baggage("lockgate.session.id", "from-baggage", incoming)
    for request, status, ctx in ((rich, 200, None), (stream, 200, incoming), (None, 500, None)):
        context, parent = recorder.start(ctx, "POST")
        attributes: dict[str, object] = {"http.request.method": "POST", "http.response.status_code": status}
        server = ServerSpan(context, parent, "POST /v1/chat/completions", time.time_ns(), attributes)
        if status == 500:
            server.status = Status(StatusCode.ERROR, "KeyError")
        record = RequestRecord.of(request, True) if request is not None else None
        out.append(FinishedRequest(server, record, time.time_ns(), ctx, None))
    return out


def test_spans_written_straight_to_protobuf_are_what_the_sdk_encodes_from_readable_spans(native: bool) -> None:
    telemetry = Telemetry(parse_config(CONFIG), environ={}, span_exporter=InMemorySpanExporter())
    assert telemetry.recorder is not None
    requests = finished_requests(telemetry)
    resource = Resource.create({"service.name": "lockgate"})
    readable, direct = ReadableSpanWriter(resource, SCOPE), SpanBytes()
    for finished in requests:
        telemetry.recorder.build(finished, readable)
        telemetry.recorder.build(finished, direct)
    assert len(readable.spans) == direct.count == 3 + 3  # a SERVER span each, a CLIENT span per attempt
    ours = ExportTraceServiceRequest.FromString(wrap_span_messages(resource, SCOPE, direct.parts, direct.cache))
    assert ours == sdk_encode(readable.spans)
    assert "sk-secret-abcdef0123456789" not in str(ours)


class Shown:
    """A value of no wire type: written as its str()."""

    def __str__(self) -> str:
        return "shown \u2603"


ODD_VALUES: dict[str, Any] = {
    "empty": "", "zero": 0, "minus": -1, "int64 min": -(2**63), "int64 max": 2**63 - 1, "past int64": 2**64 + 5,
    "below int64": -(2**63) - 1, "nan": float("nan"), "inf": float("-inf"), "bytes": b"\x00\xff", "decimal": Decimal("1.5"),
    "object": Shown(), "nested": [1, ("a", [True, 2.5]), []], "empty tuple": (), "long": "x" * 70_000,
}


def test_the_c_and_python_writers_write_the_same_bytes_for_any_value() -> None:
    if not otlp_encode.NATIVE:
        pytest.skip("the C span writer was not built")
    spans: list[tuple[Any, ...]] = [
        (SpanContext(2**128 - 1, 1, False), 2**64 - 1, None, "", SpanKind.INTERNAL, 0, 2**64 - 1, None, {}, (),
         Status(StatusCode.UNSET)),
        (SpanContext(7, 8, False), 9, SpanContext(7, 10, True), "n\u00e9", SpanKind.CONSUMER, 5, 6,
         {"fixed": "group", "port": 443}, ODD_VALUES, [("e", ODD_VALUES, 3), ("empty", {}, 4)],
         Status(StatusCode.ERROR, "why")),
        (SpanContext(7, 8, False), 11, SpanContext(7, 9, False), "s" * 200, SpanKind.SERVER, 1, 2, None,
         {"k": "v"}, (), Status(StatusCode.OK)),
    ]
    c, python = SpanBytes(native=True), SpanBytes(native=False)
    for span in spans:
        c.span(*span)
        python.span(*span)
    assert c.parts == python.parts and c.count == python.count == 3
    resource = Resource.create({"service.name": "lockgate"})
    decoded = ExportTraceServiceRequest.FromString(wrap_span_messages(resource, SCOPE, c.parts, c.cache))
    span = decoded.resource_spans[0].scope_spans[0].spans[1]
    values = {a.key: a.value for a in span.attributes}
    assert values["past int64"].string_value == str(2**64 + 5) and values["int64 min"].int_value == -(2**63)
    assert values["object"].string_value == "shown \u2603" and values["bytes"].bytes_value == b"\x00\xff"
    assert [v.string_value for v in values["nested"].array_value.values[1].array_value.values] == ["a", ""]
    assert len(values["long"].string_value) == 70_000 and span.events[0].attributes == span.attributes[2:]


@pytest.mark.parametrize("bad", [{"text": "\ud800"}, {1: "a key not str"}])
def test_a_value_the_writers_cannot_write_raises_in_both(bad: dict[Any, Any], native: bool) -> None:
    # span_batches rolls back that request's spans and counts them failed; the batch goes on.
    with pytest.raises((UnicodeEncodeError, TypeError, AttributeError)):
        SpanBytes(native=native).span(SpanContext(1, 2, False), 2, None, "x", SpanKind.CLIENT, 0, 1, None, bad, (),
                                      Status(StatusCode.UNSET))


def test_a_list_that_holds_itself_raises_instead_of_crashing(native: bool) -> None:
    looped: list[Any] = []
    looped.append(looped)
    with pytest.raises(RecursionError):
        SpanBytes(native=native).span(SpanContext(1, 2, False), 2, None, "x", SpanKind.CLIENT, 0, 1, None,
                                      {"loop": looped}, (), Status(StatusCode.UNSET))


def test_the_api_enums_values_are_the_wires_less_nothing_or_one() -> None:
    # SpanBytes writes StatusCode's value as the wire's status code and SpanKind's value + 1 as the kind.
    assert [StatusCode.UNSET.value, StatusCode.OK.value, StatusCode.ERROR.value] == [
        Status_pb.STATUS_CODE_UNSET, Status_pb.STATUS_CODE_OK, Status_pb.STATUS_CODE_ERROR]
    for kind in SpanKind:
        assert kind.value + 1 == Span_pb.SpanKind.Value(f"SPAN_KIND_{kind.name}")


@pytest.mark.parametrize("times", [(-1, 5), (5, 2**64)])
def test_a_time_past_the_wires_range_raises_in_both(times: tuple[int, int], native: bool) -> None:
    with pytest.raises((OverflowError, struct.error)):
        SpanBytes(native=native).span(SpanContext(1, 2, False), 2, None, "x", SpanKind.CLIENT, *times, None, {}, (),
                                      Status(StatusCode.UNSET))


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 2 else 6)
    if kind == 0:
        return "".join(rng.choice("ab\u00e9\u2603\U0001f600 \n") for _ in range(rng.randrange(12)))
    if kind == 1:
        return rng.choice([0, 1, -1, 127, 128, 2**31, -(2**40), 2**63 - 1, -(2**63), 2**63, 2**70, -(2**64)])
    if kind == 2:
        return rng.choice([0.0, -0.0, 1.5, 1e300, -2.5e-300, float("inf")])
    if kind == 3:
        return rng.random() < 0.5
    if kind == 4:
        return rng.randbytes(rng.randrange(5))
    if kind == 5:
        return rng.choice([None, Decimal("2.5"), Shown()])
    items = [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return items if kind == 6 else tuple(items)


def test_the_c_and_python_writers_agree_on_300_random_spans() -> None:
    if not otlp_encode.NATIVE:
        pytest.skip("the C span writer was not built")
    rng = random.Random(9)
    c, python = SpanBytes(native=True), SpanBytes(native=False)
    for number in range(300):
        attributes = {f"k{i}": random_value(rng) for i in range(rng.randrange(6))}
        events = [(f"e{i}", {"v": random_value(rng)}, rng.randrange(2**63)) for i in range(rng.randrange(3))]
        status = rng.choice([UNSET, Status(StatusCode.OK), Status(StatusCode.ERROR, rng.choice(["", "why \u00e9"]))])
        parent = rng.choice([None, SpanContext(5, 6, False), SpanContext(5, 7, True)])
        span = (SpanContext(rng.randrange(1, 2**128), 1, False), rng.randrange(1, 2**64), parent, f"span {number}",
                rng.choice(list(SpanKind)), rng.randrange(2**63), rng.randrange(2**63),
                rng.choice([None, {"fixed": 1}]), attributes, events, status)
        c.span(*span)
        python.span(*span)
    assert c.parts == python.parts
