"""Agents without an OTel pipeline: `export_spans=True` sends their spans through the gateway's `/v1/traces`."""

from __future__ import annotations

import gzip
import uuid
from collections.abc import Iterator

import grpc
import httpx
import pytest
from lockgate_sdk import Gateway
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from gateway.testing.otlp_grpc_receiver import TraceService, grpc_trace_service
from gateway.testing.otlp_receiver import Receiver, ReceiverServer
from gateway.testing.server import GatewayServer
from tests.conftest import GatewayFactory
from tests.sdk.conftest import AGENT_KEY, fake_config


@pytest.fixture(params=["http/protobuf", "grpc"])
def collector(request: pytest.FixtureRequest) -> Iterator[tuple[Receiver, str, str]]:
    """A collector on loopback, over either OTLP transport: its receiver, its URL and the protocol."""
    if request.param == "grpc":
        with grpc_trace_service() as (receiver, port):
            yield receiver, f"http://127.0.0.1:{port}", "grpc"
        return
    server = ReceiverServer().start()
    yield server.receiver, server.url, "http/protobuf"
    server.stop()


def exporting_config(store_url: str, url: str, protocol: str) -> str:
    return fake_config(store_url) + f"telemetry: {{tracing: true, otlp: {{endpoint: '{url}', protocol: {protocol}}}}}\n"


def test_agent_spans_reach_the_collector_through_the_gateway_in_one_trace(
    gateway_factory: GatewayFactory, store_url: str, collector: tuple[Receiver, str, str]
) -> None:
    received, url, protocol = collector
    server = gateway_factory(exporting_config(store_url, url, protocol))
    session_id = f"ses-{uuid.uuid4()}"
    gateway = Gateway(server.url, AGENT_KEY, agent_name="exporter", export_spans=True)
    with gateway, gateway.session(id=session_id) as session:  # closing the gateway flushes the spans
        session.openai(max_retries=0).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
        session.tool(lambda: "done")()
    received.wait_for(lambda r: any(s.name == "invoke_agent exporter" for s in r.spans))
    received.wait_for(lambda r: any(s.name == "chat gpt-4o-mini" for s in r.spans))
    agent = next(s for s in received.spans if s.name == "invoke_agent exporter")
    assert agent.resource["service.name"] == "exporter"
    assert agent.attributes["gen_ai.conversation.id"] == session_id
    tool = next(s for s in received.spans if s.name == "execute_tool <lambda>")
    chat = next(s for s in received.spans if s.name == "chat gpt-4o-mini")
    assert tool.trace_id == agent.trace_id == chat.trace_id
    assert tool.parent_span_id == agent.span_id


def test_traces_endpoint_needs_a_key_and_an_exporting_gateway(fake_gateway: GatewayServer) -> None:
    assert httpx.post(f"{fake_gateway.url}/v1/traces", content=b"").status_code == 401
    refused = httpx.post(
        f"{fake_gateway.url}/v1/traces", content=b"", headers={"authorization": f"Bearer {AGENT_KEY}"}
    )
    assert refused.status_code == 501
    assert refused.json()["error"]["code"] == "traces_not_exported"


def forward(server: GatewayServer, body: bytes, **headers: str) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/traces", content=body, headers={
        "authorization": f"Bearer {AGENT_KEY}", "content-type": "application/x-protobuf", **headers})


def test_over_grpc_the_agents_spans_are_checked_before_they_go_and_the_collectors_answer_comes_back(
    gateway_factory: GatewayFactory, store_url: str
) -> None:
    service = TraceService(Receiver())
    service.faults.extend([grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAVAILABLE])
    with grpc_trace_service(service=service) as (receiver, port):
        server = gateway_factory(exporting_config(store_url, f"http://127.0.0.1:{port}", "grpc"))
        spans = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[
            Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="invoke_agent a")])])]).SerializeToString()
        refused = forward(server, spans)
        assert refused.status_code == 400 and "INVALID_ARGUMENT" in refused.json()["error"]["message"]
        away = forward(server, spans)  # the agent's exporter retries a 502
        assert away.status_code == 502 and away.headers["retry-after"]
        taken = forward(server, gzip.compress(spans), **{"content-encoding": "gzip"})
        assert taken.status_code == 200 and [s.name for s in receiver.spans] == ["invoke_agent a"]
        as_json = forward(server, b"{}", **{"content-type": "application/json"})
        assert as_json.status_code == 415 and as_json.json()["error"]["code"] == "unsupported_media_type"
        bomb = forward(server, gzip.compress(b"\0" * (server.config.server.max_body_bytes + 1)),
                       **{"content-encoding": "gzip"})
        assert bomb.status_code == 413
        assert forward(server, b"not gzip", **{"content-encoding": "gzip"}).status_code == 400
        assert service.calls == 3  # nothing malformed or oversized reached the collector
