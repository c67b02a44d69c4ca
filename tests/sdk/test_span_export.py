"""Agents without an OTel pipeline: `export_spans=True` sends their spans through the gateway's `/v1/traces`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from lockgate_sdk import Gateway

from gateway.testing.otlp_receiver import ReceiverServer
from gateway.testing.server import GatewayServer
from tests.conftest import GatewayFactory
from tests.sdk.conftest import AGENT_KEY, fake_config


@pytest.fixture
def collector() -> Iterator[ReceiverServer]:
    server = ReceiverServer().start()
    yield server
    server.stop()


def test_agent_spans_reach_the_collector_through_the_gateway_in_one_trace(
    gateway_factory: GatewayFactory, store_url: str, collector: ReceiverServer
) -> None:
    exporting = fake_config(store_url) + (
        f"telemetry: {{tracing: true, otlp: {{endpoint: '{collector.url}', protocol: http/protobuf}}}}\n"
    )
    server = gateway_factory(exporting)
    session_id = f"ses-{uuid.uuid4()}"
    gateway = Gateway(server.url, AGENT_KEY, agent_name="exporter", export_spans=True)
    with gateway, gateway.session(id=session_id) as session:  # closing the gateway flushes the spans
        session.openai(max_retries=0).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
        session.tool(lambda: "done")()
    received = collector.receiver
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
