"""Anthropic through the litellm adapter, against a loopback server speaking the Messages API."""

from __future__ import annotations

import openai
import orjson
import pytest

from gateway.testing.server import GatewayServer
from gateway.testing.upstream import Fault, UpstreamServer
from tests.conftest import MASTER_KEY, GatewayFactory
from tests.openapi import assert_matches

ANTHROPIC_KEY = "sk-ant-api03-secret-abcdefghijklmnop"
MESSAGES = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
def claude(upstream: UpstreamServer, gateway_factory: GatewayFactory) -> openai.OpenAI:
    gateway: GatewayServer = gateway_factory(
        "model_list:\n"
        "  - model_name: claude\n"
        f"    litellm_params: {{model: anthropic/claude-3-5-sonnet-20241022, api_base: 'http://127.0.0.1:{upstream.port}', api_key: {ANTHROPIC_KEY}}}\n"
        f"general_settings: {{master_key: {MASTER_KEY}}}\n"
    )
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=MASTER_KEY, max_retries=0)


def test_json_completion_is_translated_both_ways(claude: openai.OpenAI, upstream: UpstreamServer) -> None:
    raw = claude.chat.completions.with_raw_response.create(model="claude", messages=MESSAGES, max_tokens=50)
    reply = raw.parse()
    assert reply.choices[0].message.content == "This is Lockgate's fake provider. You said: Say hello"
    assert reply.usage is not None and reply.usage.completion_tokens == 9
    assert_matches("CreateChatCompletionResponse", orjson.loads(raw.content))
    sent = upstream.upstream.received[-1]
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == ANTHROPIC_KEY
    assert sent.body["model"] == "claude-3-5-sonnet-20241022" and sent.body["max_tokens"] == 50


def test_stream_is_translated_to_openai_chunks(claude: openai.OpenAI) -> None:
    chunks = list(claude.chat.completions.create(model="claude", messages=MESSAGES, stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "This is Lockgate's fake provider. You said: Say hello"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 9


def test_tool_use_becomes_openai_tool_calls(claude: openai.OpenAI) -> None:
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}
    reply = claude.chat.completions.create(model="claude", messages=MESSAGES, tools=[tool])  # type: ignore[list-item]
    call = reply.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert reply.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "lookup" and orjson.loads(call.function.arguments) == {"q": "example"}


def test_provider_errors_become_ours_without_the_key(claude: openai.OpenAI, upstream: UpstreamServer) -> None:
    upstream.upstream.script(Fault(status=400, body=orjson.dumps(
        {"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: too large"}})))
    with pytest.raises(openai.BadRequestError) as caught:
        claude.chat.completions.create(model="claude", messages=MESSAGES)
    assert "max_tokens" in caught.value.message
    upstream.upstream.script(Fault(status=401, body=orjson.dumps(
        {"type": "error", "error": {"type": "authentication_error", "message": f"invalid x-api-key {ANTHROPIC_KEY}"}})))
    with pytest.raises(openai.InternalServerError) as failed:
        claude.chat.completions.create(model="claude", messages=MESSAGES)
    assert ANTHROPIC_KEY not in failed.value.response.text
