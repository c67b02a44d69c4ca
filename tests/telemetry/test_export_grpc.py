"""Over OTLP/gRPC: a real gateway process configured with `protocol: grpc` exports its spans to a gRPC
trace service on loopback (the collector's port 4317 role), decoded with opentelemetry-proto; and the
gRPC transport's retries, refusals, metadata and stop, against the same service made to misbehave."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import SpanContext, SpanKind

from gateway.telemetry.encoded_batch import EncodedSpanBatch
from gateway.telemetry.otlp_grpc import GrpcTransport, secure_endpoint
from gateway.telemetry.sdk import SCOPE
from gateway.telemetry.settings import OtlpTls
from gateway.telemetry.span_export import UNSET_STATUS, ExportCounts
from gateway.testing.otlp_grpc_receiver import TraceService, grpc_trace_service
from gateway.testing.otlp_receiver import Receiver
from gateway.testing.upstream import UpstreamServer
from tests.conftest import MASTER_KEY, UPSTREAM_KEY, openai_model
from tests.telemetry.test_export_e2e import (
    CLIENT,
    SERVER,
    free_port,
    start_gateway,
    stop_gateway,
    traced_chat,
)


@pytest.fixture
def grpc_receiver() -> Iterator[tuple[Receiver, int]]:
    with grpc_trace_service() as served:
        yield served


def test_spans_reach_an_otlp_grpc_receiver_when_grpc_is_selected(
    tmp_path: Path, upstream: UpstreamServer, grpc_receiver: tuple[Receiver, int]
) -> None:
    receiver, grpc_port = grpc_receiver
    config = tmp_path / "lockgate.yaml"
    config.write_text(
        "model_list:\n" + openai_model("gpt-4o", upstream)
        + f"general_settings: {{master_key: {MASTER_KEY}}}\n"
        + f"telemetry: {{otlp: {{endpoint: 'http://127.0.0.1:{grpc_port}', protocol: grpc}}, metrics: false}}\n"
    )
    port = free_port()
    process = start_gateway(config, port, {"OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_EXPORTER_OTLP_ENDPOINT": ""})
    try:
        reply, trace_id = traced_chat(port, MASTER_KEY, messages=[{"role": "user", "content": "hello over grpc"}],
                                      max_tokens=20)
        receiver.wait_for(lambda r: any(s.kind == SERVER and s.trace_id == trace_id for s in r.spans))
    finally:
        stop_gateway(process)

    spans = [s for s in receiver.spans if s.trace_id == trace_id]
    (server,) = [s for s in spans if s.kind == SERVER]
    (call,) = [s for s in spans if s.kind == CLIENT]
    assert server.resource["service.name"] == "lockgate"
    assert call.parent_span_id == server.span_id and call.name == "chat gpt-4o-upstream"
    assert call.attributes["gen_ai.response.id"] == reply.id
    assert call.attributes["gen_ai.request.max_tokens"] == 20
    assert UPSTREAM_KEY not in repr([s.attributes for s in spans])


def grpc_batch(port: int, headers: dict[str, str] | None = None, compression: str | None = None,
               timeout: float = 10.0) -> tuple[EncodedSpanBatch, ExportCounts]:
    """The span batch a gateway configured with `protocol: grpc` exports through, three spans written in it."""
    counts = ExportCounts()
    transport = GrpcTransport(f"http://127.0.0.1:{port}", headers or {}, compression, OtlpTls())
    batch = EncodedSpanBatch(transport, timeout, counts, Resource.create({"service.name": "lockgate"}), SCOPE)
    for number in range(1, 4):
        batch.writer.span(SpanContext(7, number, False), number, None, f"chat {number}", SpanKind.CLIENT, 1, 2, None,
                          {"n": number}, (), UNSET_STATUS)
    return batch, counts


def export_once(
    faults: tuple[grpc.StatusCode, ...] = (), headers: dict[str, str] | None = None, compression: str | None = None,
) -> tuple[TraceService, ExportCounts]:
    """Three spans sent once to a gRPC receiver that first answers `faults`; the service and the counts."""
    service = TraceService(Receiver())
    service.faults.extend(faults)
    with grpc_trace_service(service=service) as (_, port):
        batch, counts = grpc_batch(port, headers, compression)
        batch.send()
        batch.shutdown()
    return service, counts


def test_spans_go_out_as_written_with_headers_as_metadata_and_gzip() -> None:
    service, counts = export_once(headers={"Authorization": "Bearer t0ken", "X-Tenant": "a"}, compression="gzip")
    spans = service.receiver.spans
    assert [(s.name, s.attributes) for s in spans] == [(f"chat {n}", {"n": n}) for n in (1, 2, 3)]
    assert spans[0].resource["service.name"] == "lockgate"
    assert (counts.exported, counts.failed) == (3, 0)
    assert service.metadata[0]["authorization"] == "Bearer t0ken" and service.metadata[0]["x-tenant"] == "a"


def test_a_collector_that_is_unavailable_for_a_while_gets_the_batch_on_a_retry() -> None:
    service, counts = export_once((grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE))
    assert service.calls == 3 and service.receiver.span_count == 3
    assert (counts.exported, counts.failed) == (3, 0)


def test_a_refused_batch_is_not_retried_and_its_spans_count_failed(caplog: pytest.LogCaptureFixture) -> None:
    service, counts = export_once((grpc.StatusCode.INVALID_ARGUMENT,))
    assert service.calls == 1 and service.receiver.span_count == 0
    assert (counts.exported, counts.failed) == (0, 3)
    assert "the collector refused 3 spans: INVALID_ARGUMENT" in caplog.text


def test_a_stopping_gateway_cuts_an_export_to_a_hung_collector_short() -> None:
    service = TraceService(Receiver())
    service.hold = threading.Event()  # the call is taken and never answered
    try:
        with grpc_trace_service(service=service) as (_, port):
            batch, counts = grpc_batch(port, timeout=60)
            sender = threading.Thread(target=batch.send)
            sender.start()
            assert service.called.wait(10)
            batch.finish_by(time.monotonic())
            batch.shutdown()  # as the gateway's stop does, once its deadline has come
            sender.join(10)
            assert not sender.is_alive()
            assert (counts.exported, counts.failed) == (0, 3)
    finally:
        service.hold.set()


@pytest.mark.parametrize(("endpoint", "insecure", "secure"), [
    ("http://collector:4317", None, False),
    ("https://collector:4317", None, True),
    ("https://collector:4317", True, True),  # https always means TLS
    ("collector:4317", None, True),  # no scheme: TLS, as the SDK's exporter does
    ("collector:4317", True, False),
    ("http://collector:4317", False, True),
])
def test_tls_follows_the_otlp_exporters_rules(endpoint: str, insecure: bool | None, secure: bool) -> None:
    assert secure_endpoint(endpoint, insecure) is secure
