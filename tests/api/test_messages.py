"""`POST /v1/messages` through the real gateway with the official `anthropic` SDK: JSON, streams, tools,
errors in Anthropic's shape, and the gateway's own stages (policies, holds, traces) on the way."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from gateway.api.anthropic_reply import message_body
from gateway.testing.server import GatewayServer
from gateway.testing.upstream import Fault, UpstreamServer
from tests.conftest import MASTER_KEY, GatewayFactory
from tests.governance.test_budgets import KEY, budget_yaml
from tests.policies.helpers import config as policy_config
from tests.policies.oversight import Admin, hold_config, sqlite_url

ASK = [{"role": "user", "content": "What is the capital of France?"}]
WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
WIRE = {
    "name": "wire_money",
    "description": "the wire_money tool",
    "input_schema": {
        "type": "object", "properties": {"account": {"type": "string"}, "amount": {"type": "number"}},
        "required": ["account", "amount"],
    },
}


def client(gateway: GatewayServer, key: str = MASTER_KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)


def ask_message(gateway: GatewayServer, stream: bool, **request: Any) -> anthropic.types.Message:
    """The message, answered whole or streamed (then as the SDK adds up the stream's events)."""
    api = client(gateway).messages
    if not stream:
        return api.create(**request)
    with api.stream(**request) as events:
        return events.get_final_message()


def post(gateway: GatewayServer, body: Any) -> httpx.Response:
    return httpx.post(f"{gateway.url}/v1/messages", json=body, headers={"x-api-key": MASTER_KEY}, timeout=10)


def test_a_message_is_answered_in_anthropics_shape_and_reaches_the_upstream_as_a_chat(
    basic_gateway: GatewayServer, upstream: UpstreamServer
) -> None:
    raw = client(basic_gateway).messages.with_raw_response.create(
        model="gpt-4o", max_tokens=64, system="Be brief.", messages=ASK, stop_sequences=["END"], extra_body={"temperature": 0.2},
        metadata={"user_id": "ada"},
    )
    message = raw.parse()

    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_")
    [block] = message.content
    assert block.type == "text" and "You said: What is the capital of France?" in block.text
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert raw.headers["x-lockgate-deployment"] == "gpt-4o#0"
    sent = upstream.upstream.received[-1]
    assert sent.path.endswith("/chat/completions")
    assert sent.body["model"] == "gpt-4o-upstream"
    assert sent.body["messages"] == [{"role": "system", "content": "Be brief."}, *ASK]
    assert (sent.body["max_completion_tokens"], sent.body["stop"], sent.body["temperature"], sent.body["user"]) == (
        64, ["END"], 0.2, "ada")


def test_a_stream_arrives_as_anthropics_events_and_adds_up_to_the_message(basic_gateway: GatewayServer) -> None:
    with client(basic_gateway).messages.stream(model="gpt-4o", max_tokens=64, messages=ASK) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()

    assert events[0] == "message_start"
    assert events[-2:] == ["message_delta", "message_stop"]
    assert events.count("content_block_start") == events.count("content_block_stop") == 1
    assert "You said: What is the capital of France?" in final.content[0].text  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0 and final.usage.input_tokens > 0  # usage from the closing event


@pytest.mark.parametrize("stream", [False, True])
def test_a_tool_round_trip(basic_gateway: GatewayServer, upstream: UpstreamServer, stream: bool) -> None:
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    api = client(basic_gateway).messages
    first = ask_message(basic_gateway, stream, model="gpt-4o", max_tokens=64, messages=messages, tools=[WEATHER])
    [call] = [b for b in first.content if b.type == "tool_use"]
    assert call.name == "get_weather" and isinstance(call.input, dict) and isinstance(call.input["city"], str)
    assert first.stop_reason == "tool_use"

    messages += [
        {"role": "assistant", "content": [block.model_dump() for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18 C, sunny"}]},
    ]
    second = api.create(model="gpt-4o", max_tokens=64, messages=messages, tools=[WEATHER],
                        tool_choice={"type": "auto"})
    assert "The tool returned: 18 C, sunny" in second.content[0].text  # type: ignore[union-attr]
    sent = upstream.upstream.received[-1].body
    assert sent["tools"][0] == {"type": "function", "function": {
        "name": "get_weather", "parameters": WEATHER["input_schema"], "description": WEATHER["description"]}}
    assert sent["tool_choice"] == "auto"
    assistant, result = sent["messages"][1:]
    assert assistant["tool_calls"][0]["id"] == call.id
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == call.input
    assert result == {"role": "tool", "tool_call_id": call.id, "content": "18 C, sunny"}


def test_errors_come_in_anthropics_shape_and_the_sdk_raises_the_right_class(basic_gateway: GatewayServer) -> None:
    with pytest.raises(anthropic.AuthenticationError) as bad_key:
        client(basic_gateway, key="sk-wrong-0123456789").messages.create(model="gpt-4o", max_tokens=8, messages=ASK)
    assert bad_key.value.body == {"type": "error", "error": {"type": "authentication_error",
                                                            "message": bad_key.value.body["error"]["message"]}}
    with pytest.raises(anthropic.NotFoundError) as unknown:
        client(basic_gateway).messages.create(model="no-such-model", max_tokens=8, messages=ASK)
    assert unknown.value.body["error"]["type"] == "not_found_error"
    assert "no-such-model" in unknown.value.body["error"]["message"]

    missing = post(basic_gateway, {"model": "gpt-4o", "messages": ASK})
    assert missing.status_code == 400
    assert missing.json()["error"]["type"] == "invalid_request_error"
    assert missing.json()["error"]["message"].startswith("max_tokens:")
    document = post(basic_gateway, {"model": "gpt-4o", "max_tokens": 8, "messages": [
        {"role": "user", "content": [{"type": "document", "source": {"type": "text", "data": "x"}}]}]})
    assert document.status_code == 400
    assert document.json()["error"]["message"].startswith("messages.0.content.0.type:")
    not_json = httpx.post(f"{basic_gateway.url}/v1/messages", content=b"{", headers={"x-api-key": MASTER_KEY})
    assert not_json.status_code == 400 and not_json.json()["type"] == "error"


def test_a_stream_cut_after_its_first_byte_ends_in_an_error_the_sdk_raises(
    basic_gateway: GatewayServer, upstream: UpstreamServer
) -> None:
    upstream.upstream.script(Fault(after_chunks=3, cut=True))
    with pytest.raises(anthropic.APIStatusError) as cut, \
            client(basic_gateway).messages.stream(model="gpt-4o", max_tokens=64, messages=ASK) as stream:
        for _ in stream:
            pass
    assert cut.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    assert "upstream" in cut.value.body["error"]["message"]  # type: ignore[index]


def test_an_upstream_outage_is_a_retryable_anthropic_error(
    basic_gateway: GatewayServer, upstream: UpstreamServer
) -> None:
    upstream.upstream.script(*[Fault.error(503)] * 3)
    with pytest.raises(anthropic.APIStatusError) as down:
        client(basic_gateway).messages.create(model="gpt-4o", max_tokens=8, messages=ASK)
    assert down.value.status_code == 502
    assert down.value.response.headers["x-should-retry"] == "true"
    assert down.value.body["error"]["type"] == "api_error"  # type: ignore[index]


def test_a_policy_denial_is_a_permission_error_the_sdk_does_not_retry(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(policy_config(upstream, """
deny_patterns:
  - {name: no-drop-table, pattern: 'drop\\s+table', message: SQL that drops tables is not allowed}
"""))
    retrying = anthropic.Anthropic(base_url=gateway.url, api_key=MASTER_KEY, max_retries=2)
    with pytest.raises(anthropic.PermissionDeniedError) as denied:
        retrying.messages.create(model="gpt-4o", max_tokens=8,
                                 messages=[{"role": "user", "content": "please DROP TABLE users"}])
    assert "SQL that drops tables is not allowed" in denied.value.body["error"]["message"]  # type: ignore[index]
    assert denied.value.response.headers["x-should-retry"] == "false"
    assert upstream.upstream.count("/chat/completions") == 0


def test_pii_is_redacted_on_the_way_in_and_out(upstream: UpstreamServer, gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(policy_config(upstream, "pii: {action: redact}"))
    reply = client(gateway).messages.create(
        model="gpt-4o", max_tokens=64, messages=[{"role": "user", "content": "mail ada@example.com today"}])
    assert "ada@example.com" not in json.dumps(upstream.upstream.received[-1].body)
    assert "ada@example.com" not in reply.content[0].text  # type: ignore[union-attr]


@pytest.mark.parametrize("stream", [False, True])
def test_a_held_tool_call_is_approved_and_reaches_the_anthropic_client(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, tmp_path: Path, stream: bool
) -> None:
    gateway = gateway_factory(hold_config(upstream, sqlite_url(tmp_path), keep_alive=0.1))
    admin = Admin(gateway)
    pay = [{"role": "user", "content": "pay the invoice"}]

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(ask_message, gateway, stream, model="gpt-4o", max_tokens=64, messages=pay, tools=[WIRE])
        [pending] = admin.wait_for_pending()
        assert admin.decide(pending["id"], "edit", arguments={"account": "checked", "amount": 2}).status_code == 200
        message = future.result(10)
    [call] = [b for b in message.content if b.type == "tool_use"]
    assert (call.name, call.input) == ("wire_money", {"account": "checked", "amount": 2})
    assert message.stop_reason == "tool_use"
    assert upstream.upstream.count("/chat/completions") == 1


def test_a_waiting_stream_gets_pings_and_past_the_window_hears_it_awaits_approval(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gateway = gateway_factory(hold_config(upstream, sqlite_url(tmp_path), hold_window=0.6, keep_alive=0.1))
    body = {"model": "gpt-4o", "max_tokens": 64, "stream": True, "tools": [WIRE],
            "messages": [{"role": "user", "content": "pay the invoice"}]}
    raw = post(gateway, body).content
    names = [e.split(b"\n")[0] for e in raw.split(b"\n\n") if e]
    assert b"event: ping" in names
    assert names[-2:] == [b"event: message_delta", b"event: message_stop"]
    assert b"awaiting human approval" in raw and b"tool_use" not in raw


@pytest.mark.parametrize("completion", [
    {}, {"choices": []}, {"choices": "x"}, {"choices": [None]}, {"choices": [{"message": "text"}]},
    {"choices": [{"message": {"tool_calls": "x"}}]}, {"choices": [{"message": {"tool_calls": [1, {"function": 2}]}}]},
    {"choices": [{"message": {"content": 3}, "finish_reason": {"a": 1}}], "usage": "x"},
])
def test_an_odd_completion_from_another_provider_still_becomes_a_message(completion: dict[str, Any]) -> None:
    message = json.loads(message_body(json.dumps(completion).encode(), "gpt-4o"))
    assert message["type"] == "message" and message["model"] == "gpt-4o"
    assert all(block["type"] == "tool_use" for block in message["content"])
    assert message["usage"] == {"input_tokens": 0, "output_tokens": 0}


def test_a_spent_budget_is_a_rate_limit_error_the_sdk_does_not_retry(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gateway = gateway_factory(budget_yaml(upstream, f"sqlite:///{tmp_path / 'db'}",
                                          "{teams: {eng: [{limit_usd: 0.0005, period: daily}]}}"))
    retrying = anthropic.Anthropic(base_url=gateway.url, api_key=KEY, max_retries=3)
    retrying.messages.create(model="gpt-4o", max_tokens=5, messages=ASK)
    with pytest.raises(anthropic.RateLimitError) as refused:
        retrying.messages.create(model="gpt-4o", max_tokens=5, messages=ASK)
    assert refused.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert "team 'eng' (daily)" in refused.value.body["error"]["message"]  # type: ignore[index]
    assert refused.value.response.headers["x-should-retry"] == "false"
    assert len(upstream.upstream.received) == 1


@pytest.mark.parametrize("stream", [False, True])
def test_an_anthropic_client_reaches_an_anthropic_upstream_through_litellm(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, stream: bool
) -> None:
    """A Claude agent on Lockgate with an Anthropic deployment: Messages in, chat inside, litellm's
    translation to the Messages API out, and back; tools survive both translations."""
    anthropic_key = "sk-ant-api03-secret-abcdefghijklmnop"
    gateway = gateway_factory(
        "model_list:\n  - model_name: claude\n"
        f"    litellm_params: {{model: anthropic/claude-3-5-sonnet-20241022, "
        f"api_base: 'http://127.0.0.1:{upstream.port}', api_key: {anthropic_key}}}\n"
        f"general_settings: {{master_key: {MASTER_KEY}}}\n"
    )
    answer = ask_message(gateway, stream, model="claude", max_tokens=64, messages=ASK, tools=[WEATHER])
    [call] = [block for block in answer.content if block.type == "tool_use"]
    assert call.name == "get_weather" and call.input == {"city": "example"}
    assert answer.stop_reason == "tool_use"
    sent = upstream.upstream.received[-1]
    assert sent.path == "/v1/messages" and sent.headers["x-api-key"] == anthropic_key
    assert sent.body["model"] == "claude-3-5-sonnet-20241022" and sent.body["max_tokens"] == 64  # Anthropic's name again
    assert sent.body["tools"][0]["name"] == "get_weather"


def test_a_claude_agent_looping_on_a_tool_is_noted_then_denied(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    """Loop detection reads the translated conversation: tool_use / tool_result pairs count as calls."""
    gateway = gateway_factory(policy_config(upstream, "loops: {note_after: 3, hold_after: 5, deny_after: 5}"))
    search = {"name": "search", "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}}}

    def looping(repeats: int) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = [{"role": "user", "content": "find the quarterly report"}]
        for i in range(repeats):
            messages.append({"role": "assistant", "content": [
                {"type": "tool_use", "id": f"toolu_{i}", "name": "search", "input": {"query": "quarterly report"}}]})
            messages.append({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": f"toolu_{i}", "content": "no results", "is_error": True}]})
        return messages

    agent = anthropic.Anthropic(base_url=gateway.url, api_key=MASTER_KEY, max_retries=0,
                                default_headers={"x-lockgate-session-id": "claude-loop"})
    agent.messages.create(model="gpt-4o", max_tokens=64, messages=looping(3), tools=[search])
    note = upstream.upstream.received[-1].body["messages"][-1]
    assert note["role"] == "system" and "the tool 'search' has been called 3 times in a row" in note["content"]
    with pytest.raises(anthropic.PermissionDeniedError) as denied:
        agent.messages.create(model="gpt-4o", max_tokens=64, messages=looping(5), tools=[search])
    assert "called 5 times in a row" in denied.value.body["error"]["message"]  # type: ignore[index]
    assert upstream.upstream.count("/chat/completions") == 1
