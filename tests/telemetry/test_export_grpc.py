"""End to end over OTLP/gRPC: a real gateway process configured with `protocol: grpc` exports its spans
to a gRPC trace service on loopback (the collector's port 4317 role), decoded with opentelemetry-proto."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

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


class TraceService(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def Export(self, request: ExportTraceServiceRequest, context: Any) -> ExportTraceServiceResponse:
        self.receiver.record_traces(request)
        return ExportTraceServiceResponse()


@contextmanager
def grpc_trace_service(credentials: grpc.ServerCredentials | None = None) -> Iterator[tuple[Receiver, int]]:
    """An OTLP/gRPC trace service on 127.0.0.1 (TLS with `credentials`): its receiver and port."""
    receiver = Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(receiver), server)
    address = "127.0.0.1:0"
    port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    server.start()
    try:
        yield receiver, port
    finally:
        server.stop(grace=None)


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
