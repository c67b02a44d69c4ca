"""End to end over OTLP/gRPC: a real gateway process configured with `protocol: grpc` exports its spans
to a gRPC trace service on loopback (the collector's port 4317 role), decoded with opentelemetry-proto."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import openai
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from gateway.testing.otlp_receiver import Receiver
from gateway.testing.upstream import UpstreamServer
from tests.conftest import MASTER_KEY, UPSTREAM_KEY, openai_model
from tests.telemetry.test_export_e2e import CLIENT, SERVER, free_port, start_gateway, stop_gateway


class TraceService(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def Export(self, request: ExportTraceServiceRequest, context: Any) -> ExportTraceServiceResponse:
        self.receiver.record_traces(request)
        return ExportTraceServiceResponse()


@pytest.fixture
def grpc_receiver() -> Iterator[tuple[Receiver, int]]:
    receiver = Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(receiver), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield receiver, port
    server.stop(grace=None)


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
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=MASTER_KEY, max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hello over grpc"}], max_tokens=20,
        )
        reply = raw.parse()
        trace_id = raw.headers["x-lockgate-trace-id"]
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
