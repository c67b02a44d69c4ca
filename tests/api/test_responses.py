"""`POST /v1/responses` through the real gateway with the official `openai` SDK (and the OpenAI Agents SDK,
whose default model uses it): JSON and streams checked against OpenAI's spec, tools, errors, holds."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from gateway.testing.server import GatewayServer
from gateway.testing.upstream import Fault, UpstreamServer
from tests.conftest import MASTER_KEY, GatewayFactory
from tests.openapi import assert_matches
from tests.policies.oversight import Admin, hold_config, sqlite_url

WEATHER = {
    "type": "function", "name": "get_weather", "description": "Current weather for a city", "strict": True,
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                   "additionalProperties": False},
}
WIRE = {
    "type": "function", "name": "wire_money", "description": "the wire_money tool",
    "parameters": {"type": "object", "properties": {"account": {"type": "string"}, "amount": {"type": "number"}},
                   "required": ["account", "amount"]},
}


def client(gateway: GatewayServer, **options: Any) -> openai.OpenAI:
    options.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=MASTER_KEY, **options)


def respond(gateway: GatewayServer, stream: bool, **request: Any) -> Any:
    """The response, answered whole or streamed (then as the SDK adds up the stream's events)."""
    api = client(gateway).responses
    if not stream:
        return api.create(**request)
    with api.stream(**request) as events:
        return events.get_final_response()


def stream_events(gateway: GatewayServer, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The raw events of a streamed response, each checked against the spec."""
    with httpx.Client(timeout=10) as http:
        raw = http.post(f"{gateway.url}/v1/responses", json={**body, "stream": True},
                        headers={"Authorization": f"Bearer {MASTER_KEY}"}).content
    events = []
    for block in raw.decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n") if line and not line.startswith(":"))
        if "data" in lines:
            event = json.loads(lines["data"])
            assert lines["event"] == event["type"]
            assert_matches("ResponseStreamEvent", event)
            events.append(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def test_a_response_matches_the_spec_and_reaches_the_upstream_as_a_chat(
    basic_gateway: GatewayServer, upstream: UpstreamServer
) -> None:
    raw = client(basic_gateway).responses.with_raw_response.create(
        model="gpt-4o", instructions="Be brief.", input="What is the capital of France?", max_output_tokens=64,
        temperature=0.2, text={"format": {"type": "json_schema", "name": "answer", "schema": {"type": "object"}}},
    )
    response = raw.parse()
    assert_matches("Response", json.loads(raw.content))
    assert response.status == "completed" and response.id.startswith("resp_")
    assert "You said: What is the capital of France?" in response.output_text
    assert response.instructions == "Be brief." and response.temperature == 0.2
    assert response.usage is not None and response.usage.total_tokens > 0
    assert raw.headers["x-lockgate-deployment"] == "gpt-4o#0"
    sent = upstream.upstream.received[-1]
    assert sent.path.endswith("/chat/completions") and sent.body["model"] == "gpt-4o-upstream"
    assert sent.body["messages"] == [{"role": "system", "content": "Be brief."},
                                     {"role": "user", "content": "What is the capital of France?"}]
    assert (sent.body["max_completion_tokens"], sent.body["temperature"]) == (64, 0.2)
    assert "max_tokens" not in sent.body  # which OpenAI's reasoning models refuse
    assert sent.body["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}}}


def test_a_stream_matches_the_spec_and_adds_up_to_the_response(basic_gateway: GatewayServer) -> None:
    events = stream_events(basic_gateway, {"model": "gpt-4o", "input": "hello"})
    kinds = [e["type"] for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    done = events[-1]["response"]
    assert done["output"][0]["content"][0]["text"] == text and "You said: hello" in text
    assert done["usage"]["output_tokens"] > 0

    with client(basic_gateway).responses.stream(model="gpt-4o", input="hello") as stream:
        final = stream.get_final_response()
    assert final.output_text == text


@pytest.mark.parametrize("stream", [False, True])
def test_a_function_call_round_trip(basic_gateway: GatewayServer, upstream: UpstreamServer, stream: bool) -> None:
    api = client(basic_gateway).responses
    items: list[Any] = [{"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]}]
    first = respond(basic_gateway, stream, model="gpt-4o", input=items, tools=[WEATHER])
    [call] = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and isinstance(json.loads(call.arguments)["city"], str)

    items += [item.model_dump(exclude_none=True) for item in first.output]
    items.append({"type": "function_call_output", "call_id": call.call_id, "output": "18 C, sunny"})
    second = api.create(model="gpt-4o", input=items, tools=[WEATHER], tool_choice="auto")  # type: ignore[list-item]
    assert "The tool returned: 18 C, sunny" in second.output_text
    sent = upstream.upstream.received[-1].body
    assert sent["tools"] == [{"type": "function", "function": {k: v for k, v in WEATHER.items() if k != "type"}}]
    assistant, result = sent["messages"][1:]
    assert assistant["tool_calls"] == [{"id": call.call_id, "type": "function",
                                        "function": {"name": "get_weather", "arguments": call.arguments}}]
    assert result == {"role": "tool", "tool_call_id": call.call_id, "content": "18 C, sunny"}


def test_a_cut_by_max_output_tokens_is_an_incomplete_response(
    basic_gateway: GatewayServer, upstream: UpstreamServer
) -> None:
    upstream.upstream.script(Fault(body=json.dumps({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-upstream",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Par"}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    }).encode()))
    response = client(basic_gateway).responses.create(model="gpt-4o", input="hi", max_output_tokens=1)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None and response.incomplete_details.reason == "max_output_tokens"


def test_errors_are_openais_and_what_cannot_be_carried_is_a_400_naming_it(basic_gateway: GatewayServer) -> None:
    with pytest.raises(openai.NotFoundError):
        client(basic_gateway).responses.create(model="no-such-model", input="hi")
    with pytest.raises(openai.BadRequestError) as chained:
        client(basic_gateway).responses.create(model="gpt-4o", input="hi", previous_response_id="resp_1")
    assert chained.value.body["param"] == "previous_response_id"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as builtin:
        client(basic_gateway).responses.create(model="gpt-4o", input="hi", tools=[{"type": "web_search"}])
    assert builtin.value.body["param"] == "tools[0].type"  # type: ignore[index]


def test_a_stream_cut_after_its_first_byte_fails_the_response(
    basic_gateway: GatewayServer, upstream: UpstreamServer
) -> None:
    upstream.upstream.script(Fault(after_chunks=3, cut=True))
    events = stream_events(basic_gateway, {"model": "gpt-4o", "input": "hello"})
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    assert events[-1]["response"]["status"] == "failed"


@pytest.mark.parametrize("stream", [False, True])
def test_a_held_call_is_approved_and_reaches_the_client_as_a_function_call(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, tmp_path: Path, stream: bool
) -> None:
    gateway = gateway_factory(hold_config(upstream, sqlite_url(tmp_path), keep_alive=0.1))
    admin = Admin(gateway)

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(respond, gateway, stream, model="gpt-4o", input="pay the invoice", tools=[WIRE])
        [pending] = admin.wait_for_pending()
        assert admin.decide(pending["id"], "approve").status_code == 200
        response = future.result(10)
    [call] = [item for item in response.output if item.type == "function_call"]
    assert (call.name, json.loads(call.arguments)) == ("wire_money", {"account": "example", "amount": 1})
    assert upstream.upstream.count("/chat/completions") == 1


def test_an_agent_on_the_agents_sdks_default_model_runs_its_tool_through_the_gateway(
    basic_gateway: GatewayServer, upstream: UpstreamServer
) -> None:
    agents = pytest.importorskip("agents")
    ran: list[str] = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        ran.append(city)
        return "18 C, sunny"

    model = agents.OpenAIResponsesModel("gpt-4o", openai.AsyncOpenAI(base_url=f"{basic_gateway.url}/v1",
                                                                      api_key=MASTER_KEY, max_retries=0))
    agent = agents.Agent(name="weather", instructions="Answer briefly.", tools=[get_weather], model=model)
    result = agents.Runner.run_sync(agent, "Weather in Paris?", run_config=agents.RunConfig(tracing_disabled=True))
    assert len(ran) == 1
    assert "The tool returned: 18 C, sunny" in result.final_output
    assert [r.path.rsplit("/", 1)[-1] for r in upstream.upstream.received] == ["completions", "completions"]


async def test_a_streamed_agent_run_on_the_default_model_goes_through_too(basic_gateway: GatewayServer) -> None:
    agents = pytest.importorskip("agents")

    @agents.function_tool
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        return "18 C, sunny"

    async with openai.AsyncOpenAI(base_url=f"{basic_gateway.url}/v1", api_key=MASTER_KEY, max_retries=0) as api:
        agent = agents.Agent(name="weather", tools=[get_weather], model=agents.OpenAIResponsesModel("gpt-4o", api))
        run = agents.Runner.run_streamed(agent, "Weather in Paris?", run_config=agents.RunConfig(tracing_disabled=True))
        kinds = {event.type async for event in run.stream_events()}
    assert "raw_response_event" in kinds and "run_item_stream_event" in kinds
    assert "The tool returned: 18 C, sunny" in run.final_output


def test_a_streamed_function_call_matches_the_spec(basic_gateway: GatewayServer) -> None:
    events = stream_events(basic_gateway, {"model": "gpt-4o", "input": "Weather in Paris?", "tools": [WEATHER]})
    kinds = [e["type"] for e in events]
    assert "response.function_call_arguments.delta" in kinds
    done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert done["name"] == "get_weather" and isinstance(json.loads(done["arguments"])["city"], str)
    [item] = events[-1]["response"]["output"]
    assert (item["type"], item["status"], item["arguments"]) == ("function_call", "completed", done["arguments"])
