"""The drop-in examples, run against the demo config: one trace from the agent through the gateway to the tools.

Each example runs in-process against a real gateway serving `lockgate demo`'s config (so the
gateway's spans can be collected), and one runs as its own process against `lockgate demo` itself.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from lockgate_sdk import Gateway
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from gateway.config import parse_config
from gateway.testing.server import GatewayServer
from tests.sdk.conftest import Spans
from tests.telemetry.conftest import SpanSink

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
DEMO_KEY = "lockgate-demo-key"


class ChatSink(SpanSink):
    """The gateway's spans; `wait_chats` waits for its chat-completion request spans (which end last)."""

    def route(self, route: str) -> list[ReadableSpan]:
        return [s for s in self.servers() if (s.attributes or {}).get("http.route") == route]

    def wait_route(self, route: str, count: int) -> list[ReadableSpan]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.route(route)) >= count, 10.0):
                raise AssertionError(f"expected {count} request spans on {route}, got {len(self.route(route))}")
        return self.route(route)

    def wait_chats(self, count: int, route: str = "/v1/chat/completions") -> list[ReadableSpan]:
        return self.wait_route(route, count)


def _example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"lockgate_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[GatewayServer, ChatSink]]:
    """A real gateway on the demo config (fake models), its spans in memory, its state in tmp."""
    text = (ROOT / "gateway" / "config" / "demo.yaml").read_text()
    sink = ChatSink()
    config = parse_config(text + f"\nstore: sqlite:///{tmp_path}/demo.db\ntelemetry: {{tracing: true}}\n")
    server = GatewayServer(config, span_exporter=sink).start()
    yield server, sink
    server.stop()


def _assert_one_trace(
    agent_spans: Spans, sink: ChatSink, llm_calls: int, tool: str, route: str = "/v1/chat/completions"
) -> None:
    agent = agent_spans.named("invoke_agent")[0]
    trace_id = agent.context.trace_id
    servers = sink.wait_chats(llm_calls, route)
    assert len(servers) == llm_calls
    for server in servers:
        # The gateway's request spans are children of the agent's span: one trace.
        assert server.context.trace_id == trace_id
        assert server.parent is not None and server.parent.span_id == agent.context.span_id
        chats = [s for s in sink.children(server) if s.kind is SpanKind.CLIENT]
        assert chats and chats[0].name == "chat gpt-4o-mini"
        assert chats[0].context.trace_id == trace_id
    tools: list[ReadableSpan] = agent_spans.named(f"execute_tool {tool}")
    assert len(tools) == 1
    assert tools[0].context.trace_id == trace_id
    assert tools[0].parent is not None and tools[0].parent.span_id == agent.context.span_id


def _tool_events(server: GatewayServer, session_id: str) -> list[dict[str, Any]]:
    reply = httpx.get(
        f"{server.url}/v1/lockgate/sessions/{session_id}/events", headers={"authorization": f"Bearer {DEMO_KEY}"}
    )
    return list(reply.json()["data"])


def test_plain_openai_tool_loop(demo: tuple[GatewayServer, ChatSink], spans: Spans) -> None:
    server, sink = demo
    with Gateway(server.url, DEMO_KEY, tracer_provider=spans.provider) as gateway:
        answer = _example("openai_tool_loop").run(gateway, session_id="ses-example-openai")
    assert answer.startswith("The tool returned:") and '"forecast": "sunny"' in answer
    _assert_one_trace(spans, sink, llm_calls=2, tool="get_weather")
    # The SDK's own report of the tool's outcome is in the agent's trace on the gateway too.
    (report,) = sink.wait_route("/v1/lockgate/sessions/{session_id}/events", 1)
    assert report.context.trace_id == spans.named("invoke_agent")[0].context.trace_id
    events = _tool_events(server, "ses-example-openai")
    assert [(e["name"], e["status"]) for e in events] == [("get_weather", "ok")]
    assert events[0]["call_id"].startswith("call_")


def test_openai_agents_sdk_on_its_default_responses_model(demo: tuple[GatewayServer, ChatSink], spans: Spans) -> None:
    server, sink = demo
    gateway = Gateway(server.url, DEMO_KEY, tracer_provider=spans.provider)
    answer = asyncio.run(_example("openai_agents").run(gateway, session_id="ses-example-agents"))
    gateway.close()
    assert answer.startswith("The tool returned:")
    _assert_one_trace(spans, sink, llm_calls=2, tool="get_weather", route="/v1/responses")
    tool_span = spans.named("execute_tool get_weather")[0]
    # The call id the model chose (the fake model's), carried from the Agents SDK's tool context.
    events = _tool_events(server, "ses-example-agents")
    assert tool_span.attributes is not None and events[0]["call_id"] == tool_span.attributes["gen_ai.tool.call.id"]
    assert str(events[0]["call_id"]).startswith("call_")


def test_langchain_chat_openai_with_a_tool(demo: tuple[GatewayServer, ChatSink], spans: Spans) -> None:
    server, sink = demo
    with Gateway(server.url, DEMO_KEY, tracer_provider=spans.provider) as gateway:
        answer = _example("langchain_tool").run(gateway, session_id="ses-example-langchain")
    assert answer.startswith("The tool returned:")
    _assert_one_trace(spans, sink, llm_calls=2, tool="get_weather")
    with Gateway(server.url, DEMO_KEY) as gateway, gateway.session(id="ses-example-langchain") as session:
        assert session.state["last_answer"] == answer


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_example_runs_as_a_script_against_lockgate_demo(tmp_path: Path) -> None:
    port = _free_port()
    lockgate = Path(sys.executable).parent / "lockgate"
    demo = subprocess.Popen(
        [str(lockgate), "demo", "--port", str(port)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        # Ready when uvicorn says so on its log (an event, not a sleep), within a bound.
        ready = threading.Event()

        def watch() -> None:
            assert demo.stdout is not None
            for line in demo.stdout:
                if b"Application startup complete" in line:
                    ready.set()

        threading.Thread(target=watch, daemon=True).start()
        if not ready.wait(60):
            pytest.fail("lockgate demo did not start")
        env = {**os.environ, "LOCKGATE_BASE_URL": f"http://127.0.0.1:{port}"}
        done = subprocess.run(
            [sys.executable, str(EXAMPLES / "openai_tool_loop.py")],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("The tool returned:")
    finally:
        demo.terminate()
        demo.wait(15)
