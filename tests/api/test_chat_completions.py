"""Chat completions through the real gateway with the official `openai` SDK, checked against the spec."""

from __future__ import annotations

import httpx
import openai
import orjson
import pytest

from gateway.testing.server import GatewayServer
from gateway.testing.upstream import UpstreamServer
from tests.conftest import MASTER_KEY, UPSTREAM_KEY
from tests.openapi import assert_matches

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def client(gateway: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=MASTER_KEY, max_retries=0)


def test_json_completion_matches_the_spec_and_reaches_the_upstream_with_its_model(
    basic_gateway: GatewayServer, upstream: UpstreamServer
) -> None:
    raw = client(basic_gateway).chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)
    reply = raw.parse()

    assert "You said: What is the capital of France?" in (reply.choices[0].message.content or "")
    assert reply.usage is not None and reply.usage.total_tokens > 0
    assert_matches("CreateChatCompletionResponse", orjson.loads(raw.content))
    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.headers["x-lockgate-deployment"] == "gpt-4o#0"
    assert raw.headers["x-lockgate-attempts"] == "1"
    sent = upstream.upstream.received[-1]
    assert sent.body["model"] == "gpt-4o-upstream"
    assert sent.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert sent.body["messages"] == MESSAGES


async def test_async_client_gets_the_same_answer(basic_gateway: GatewayServer) -> None:
    async with openai.AsyncOpenAI(base_url=f"{basic_gateway.url}/v1", api_key=MASTER_KEY, max_retries=0) as aclient:
        reply = await aclient.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.role == "assistant"


def test_stream_chunks_match_the_spec_and_the_usage_chunk_is_stripped_unless_asked(
    basic_gateway: GatewayServer, upstream: UpstreamServer
) -> None:
    with httpx.Client(timeout=10) as http:
        response = http.post(
            f"{basic_gateway.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {MASTER_KEY}"},
            json={"model": "gpt-4o", "messages": MESSAGES, "stream": True},
        )
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line[6:] for line in response.text.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    for chunk in chunks:
        assert_matches("CreateChatCompletionStreamResponse", chunk)
        assert chunk["choices"], "the client did not ask for usage, so no usage-only chunk"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    # The gateway asked the upstream for usage on the client's behalf.
    assert upstream.upstream.received[-1].body["stream_options"] == {"include_usage": True}


def test_stream_with_include_usage_ends_with_the_usage_chunk(basic_gateway: GatewayServer) -> None:
    stream = client(basic_gateway).chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("This is Lockgate's fake provider.")
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(text.split(" "))


async def test_async_stream(basic_gateway: GatewayServer) -> None:
    async with openai.AsyncOpenAI(base_url=f"{basic_gateway.url}/v1", api_key=MASTER_KEY, max_retries=0) as aclient:
        stream = await aclient.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
        finish = [c.choices[0].finish_reason async for c in stream if c.choices]
    assert finish[-1] == "stop"


def test_tool_call_round_trip_json_and_stream(basic_gateway: GatewayServer) -> None:
    sdk = client(basic_gateway)
    reply = sdk.chat.completions.create(model="gpt-4o", messages=MESSAGES, tools=[WEATHER_TOOL])
    call = reply.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert reply.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and orjson.loads(call.function.arguments) == {"city": "example"}

    streamed = list(sdk.chat.completions.create(model="gpt-4o", messages=MESSAGES, tools=[WEATHER_TOOL], stream=True))
    deltas = [d for c in streamed if c.choices for d in c.choices[0].delta.tool_calls or ()]
    assert deltas[0].function.name == "get_weather" and deltas[0].id == call.id
    assert "".join(d.function.arguments or "" for d in deltas) == call.function.arguments
    assert streamed[-1].choices[0].finish_reason == "tool_calls"

    # The agent answers with the tool's result; the model reports it.
    follow_up = sdk.chat.completions.create(
        model="gpt-4o",
        tools=[WEATHER_TOOL],
        messages=[
            *MESSAGES,
            {"role": "assistant", "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"},
        ],
    )
    assert follow_up.choices[0].message.content == "The tool returned: sunny, 21C"


def test_unchanged_body_is_forwarded_byte_for_byte(
    upstream: UpstreamServer, gateway_factory: object
) -> None:
    """When the upstream model has the client's name, the body is not re-encoded."""
    gateway = gateway_factory(  # type: ignore[operator]
        "model_list:\n"
        f"  - model_name: same-name\n    litellm_params: {{model: openai/same-name, api_base: '{upstream.url}'}}\n"
    )
    body = b'{"model":"same-name",  "messages":[{"role":"user","content":"spacing kept"}]}'
    with httpx.Client() as http:
        response = http.post(f"{gateway.url}/v1/chat/completions", content=body)
    assert response.status_code == 200
    assert upstream.upstream.received[-1].body == orjson.loads(body)


@pytest.mark.parametrize("header", ["x-request-id"])
def test_client_request_id_is_echoed(basic_gateway: GatewayServer, header: str) -> None:
    with httpx.Client() as http:
        response = http.get(f"{basic_gateway.url}/healthz", headers={header: "trace-me-42"})
    assert response.headers[header] == "trace-me-42"
    assert response.json() == {"status": "ok"}
