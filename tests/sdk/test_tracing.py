"""Agent and tool spans, and the trace context on every request the official clients send."""

from __future__ import annotations

import uuid

import pytest
from lockgate_sdk import Gateway
from opentelemetry.trace import SpanKind, StatusCode

from gateway.testing.upstream import UpstreamServer
from tests.conftest import GatewayFactory
from tests.sdk.conftest import SdkFactory, Spans

MESSAGES = [{"role": "user", "content": "hi"}]


def _lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _traceparent(headers: dict[str, str]) -> tuple[str, str]:
    _, trace_id, parent_id, _ = _lower(headers)["traceparent"].split("-")
    return trace_id, parent_id


def test_openai_client_carries_the_current_span_on_each_request(upstream: UpstreamServer, spans: Spans) -> None:
    """One client, two calls: each carries the span current at send time (agent, then tool)."""
    gateway = Gateway(upstream.url, "sk-agent-0123456789", tracer_provider=spans.provider)
    with gateway, gateway.session(user="ada", agent_name="planner") as session:
        client = session.openai()
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        with session.tool_call("lookup", "call_1"):
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    agent = spans.named("invoke_agent")[0]
    tool = spans.named("execute_tool")[0]
    first, second = upstream.upstream.received[-2:]
    assert _traceparent(first.headers) == (f"{agent.context.trace_id:032x}", f"{agent.context.span_id:016x}")
    assert _traceparent(second.headers) == (f"{agent.context.trace_id:032x}", f"{tool.context.span_id:016x}")
    headers = _lower(first.headers)
    assert headers["x-lockgate-session-id"] == session.id
    assert headers["x-lockgate-user"] == "ada"
    assert headers["authorization"] == "Bearer sk-agent-0123456789"


async def test_async_openai_client_carries_the_trace_context(upstream: UpstreamServer, spans: Spans) -> None:
    gateway = Gateway(upstream.url + "/", "sk-agent-0123456789", tracer_provider=spans.provider)
    async with gateway.session(id="ses-async") as session:
        client = session.async_openai()
        stream = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
        async for _ in stream:
            pass
        await client.close()
    agent = spans.named("invoke_agent")[0]
    received = upstream.upstream.received[-1]
    assert _traceparent(received.headers)[0] == f"{agent.context.trace_id:032x}"
    assert _lower(received.headers)["x-lockgate-session-id"] == "ses-async"


def test_anthropic_client_carries_the_trace_context(upstream: UpstreamServer, spans: Spans) -> None:
    gateway = Gateway(upstream.url, "sk-agent-0123456789", tracer_provider=spans.provider)
    with gateway, gateway.session() as session:
        client = session.anthropic()
        client.messages.create(model="claude-3-5-sonnet", max_tokens=16, messages=MESSAGES)
    received = upstream.upstream.received[-1]
    assert received.path == "/v1/messages"
    assert _traceparent(received.headers)[0] == f"{spans.named('invoke_agent')[0].context.trace_id:032x}"
    headers = _lower(received.headers)
    # Depending on the anthropic release, the key travels as `x-api-key` or as a bearer token.
    assert "sk-agent-0123456789" in (headers.get("x-api-key", ""), headers.get("authorization", "")[7:])


def test_invoke_agent_span_attributes_and_outcome(sdk: SdkFactory, spans: Spans) -> None:
    gateway = sdk(agent_name="booker")
    with gateway.session(id="ses-span", user="ada", metadata={"ticket": "T-1"}):
        pass
    with pytest.raises(RuntimeError), gateway.session(id="ses-fail"):
        raise RuntimeError("boom")
    ok, failed = spans.named("invoke_agent booker")
    assert ok.kind == SpanKind.INTERNAL
    assert dict(ok.attributes or {}) == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "booker",
        "gen_ai.conversation.id": "ses-span",
        "session.id": "ses-span",
        "user.id": "ada",
        "openinference.span.kind": "AGENT",
        "lockgate.session.metadata.ticket": "T-1",
        "lockgate.session.outcome": "ok",
    }
    assert ok.status.status_code == StatusCode.UNSET
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.attributes is not None and failed.attributes["error.type"] == "RuntimeError"
    assert failed.attributes["lockgate.session.outcome"] == "error"


def test_tool_decorator_and_context_manager_spans_without_content(sdk: SdkFactory, spans: Spans) -> None:
    with sdk(capture_content=False).session() as session:

        @session.tool
        def get_weather(city: str) -> str:
            """Current weather for a city."""
            return f"sunny in {city}"

        assert get_weather("Paris") == "sunny in Paris"
        with pytest.raises(ValueError), session.tool_call("book", "call_42", {"flight": "LH1"}):
            raise ValueError("sold out")
    weather, book = spans.named("execute_tool")
    agent = spans.named("invoke_agent")[0]
    assert weather.name == "execute_tool get_weather"
    assert weather.parent is not None and weather.parent.span_id == agent.context.span_id
    attributes = dict(weather.attributes or {})
    assert attributes["gen_ai.operation.name"] == "execute_tool"
    assert attributes["gen_ai.tool.name"] == "get_weather"
    assert attributes["gen_ai.tool.description"] == "Current weather for a city."
    assert attributes["gen_ai.tool.call.id"].startswith("call_")
    assert "gen_ai.tool.call.arguments" not in attributes and "gen_ai.tool.call.result" not in attributes
    assert book.name == "execute_tool book"
    assert book.attributes is not None and book.attributes["gen_ai.tool.call.id"] == "call_42"
    assert book.status.status_code == StatusCode.ERROR
    assert book.attributes["error.type"] == "ValueError"
    assert "sold out" not in (book.status.description or "")  # exception text is content too


async def test_async_tool_with_content_capture(sdk: SdkFactory, spans: Spans) -> None:
    async with sdk(capture_content=True).session() as session:

        @session.tool(name="search", description="Search the web.")
        async def search_web(query: str, limit: int = 3) -> list[str]:
            return [f"{query} {i}" for i in range(limit)]

        assert await search_web("otel", limit=2) == ["otel 0", "otel 1"]
    tool = spans.named("execute_tool search")[0]
    assert tool.attributes is not None
    assert tool.attributes["gen_ai.tool.call.arguments"] == '{"limit": 2, "query": "otel"}'
    assert tool.attributes["gen_ai.tool.call.result"] == '["otel 0", "otel 1"]'
    assert tool.attributes["gen_ai.tool.description"] == "Search the web."


def test_tool_outcomes_reach_the_gateway(sdk: SdkFactory, spans: Spans) -> None:
    session_id = f"ses-{uuid.uuid4()}"
    with sdk().session(id=session_id) as session:
        lookup = session.tool(lambda order: {"order": order, "status": "shipped"})
        lookup("A1")
        lookup("A1")
        with pytest.raises(KeyError), session.tool_call("refund", "call_9", {"order": "A1"}):
            raise KeyError("A1")
        events = session.events()
    assert [(e["name"], e["status"]) for e in events] == [("<lambda>", "ok"), ("<lambda>", "ok"), ("refund", "error")]
    first, second, refund = events
    # Same call, same result: the gateway can see the repetition without seeing the content.
    assert first["arguments_sha256"] == second["arguments_sha256"]
    assert first["result_sha256"] == second["result_sha256"]
    assert "arguments" not in first and "result" not in first
    assert refund["call_id"] == "call_9" and refund["error_type"] == "KeyError"
    assert refund["trace_id"] == f"{spans.named('invoke_agent')[0].context.trace_id:032x}"
    assert refund["principal"] == "agent"


def test_reporting_failure_never_fails_the_tool(gateway_factory: GatewayFactory, spans: Spans) -> None:
    # A gateway that is gone: the tool still runs and returns, the span still ends.
    server = gateway_factory("model_list: []\n")
    url = server.url
    server.stop()
    with Gateway(url, "k", tracer_provider=spans.provider).session() as session:
        assert session.tool(lambda: 42)() == 42
    assert len(spans.named("execute_tool")) == 1


def test_the_anthropic_client_works_through_the_gateway(sdk: SdkFactory) -> None:
    """`session.anthropic()` points the official client at the gateway, which speaks the Messages API."""
    weather = {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
    with sdk().session(id="ses-claude") as session:
        client = session.anthropic(max_retries=0)
        asked: list = [{"role": "user", "content": "Weather in Paris?"}]  # type: ignore[type-arg]
        first = client.messages.create(model="gpt-4o-mini", max_tokens=64, messages=asked, tools=[weather])
        [call] = [block for block in first.content if block.type == "tool_use"]
        with session.tool_call(call.name, call.id, call.input) as running:
            running.set_result("18 C")
        asked += [
            {"role": "assistant", "content": [block.model_dump() for block in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18 C"}]},
        ]
        second = client.messages.create(model="gpt-4o-mini", max_tokens=64, messages=asked, tools=[weather])
    assert first.stop_reason == "tool_use"
    assert "The tool returned: 18 C" in second.content[0].text  # type: ignore[union-attr]


async def test_the_async_anthropic_client_streams_through_the_gateway(sdk: SdkFactory) -> None:
    async with sdk().session() as session:
        client = session.async_anthropic(max_retries=0)
        async with client.messages.stream(model="gpt-4o-mini", max_tokens=64, messages=MESSAGES) as stream:
            text = "".join([chunk async for chunk in stream.text_stream])
        await client.close()
    assert "You said: hi" in text
