"""The span tree a user sees for real requests through the gateway (official openai SDK as client)."""

from __future__ import annotations

import anthropic
import httpx
import openai
import orjson
from opentelemetry.trace import SpanKind, StatusCode

from gateway.testing.upstream import Fault, UpstreamServer
from tests.conftest import MASTER_KEY, UPSTREAM_KEY, openai_model
from tests.telemetry.conftest import SpanSink, TracedFactory

MESSAGES = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "What is the capital of France?"},
]
AUTH = f"general_settings: {{master_key: {MASTER_KEY}}}\n"


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=MASTER_KEY, max_retries=0)


def one_request(sink: SpanSink) -> tuple[object, list[object]]:
    (server,) = sink.wait_servers(1)
    return server, sink.children(server)


def assert_no_secrets(sink: SpanSink) -> None:
    for span in sink.get_finished_spans():
        text = repr(dict(span.attributes or {})) + repr([dict(e.attributes or {}) for e in span.events])
        assert UPSTREAM_KEY not in text and MASTER_KEY not in text


def test_plain_call_is_one_server_span_with_one_chat_client_span(
    traced_gateway: TracedFactory, upstream: UpstreamServer
) -> None:
    gateway, sink = traced_gateway("model_list:\n" + openai_model("gpt-4o", upstream) + AUTH)
    raw = client(gateway.url).chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MESSAGES, temperature=0.2, max_tokens=50, top_p=0.9, stop=["\n\n"]
    )
    reply = raw.parse()

    server, children = one_request(sink)
    assert server.name == "POST /v1/chat/completions" and server.kind is SpanKind.SERVER
    assert raw.headers["x-lockgate-trace-id"] == format(server.context.trace_id, "032x")
    s = server.attributes
    assert s["http.response.status_code"] == 200 and s["http.route"] == "/v1/chat/completions"
    assert s["gen_ai.request.model"] == "gpt-4o" and s["lockgate.deployment.id"] == "gpt-4o#0"
    assert s["lockgate.request_id"] == raw.headers["x-request-id"]
    assert server.status.status_code is not StatusCode.ERROR

    (call,) = children
    assert call.name == "chat gpt-4o-upstream" and call.kind is SpanKind.CLIENT
    a = call.attributes
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o-upstream"
    assert a["gen_ai.response.id"] == reply.id and a["gen_ai.response.model"] == reply.model
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert reply.usage is not None
    assert a["gen_ai.usage.input_tokens"] == reply.usage.prompt_tokens
    assert a["gen_ai.usage.output_tokens"] == reply.usage.completion_tokens
    assert a["gen_ai.request.temperature"] == 0.2 and a["gen_ai.request.max_tokens"] == 50
    assert a["gen_ai.request.top_p"] == 0.9 and a["gen_ai.request.stop_sequences"] == ("\n\n",)
    assert a["gen_ai.request.stream"] is False
    assert a["server.address"] == "127.0.0.1" and a["server.port"] == upstream.port
    assert a["openinference.span.kind"] == "LLM"
    # Content is not captured unless the operator opts in.
    assert "gen_ai.input.messages" not in a and "gen_ai.output.messages" not in a
    assert server.start_time <= call.start_time and call.end_time <= server.end_time
    assert_no_secrets(sink)


def test_streamed_call_span_lasts_until_the_stream_ends_and_has_time_to_first_chunk(
    traced_gateway: TracedFactory, upstream: UpstreamServer
) -> None:
    gateway, sink = traced_gateway("model_list:\n" + openai_model("gpt-4o", upstream) + AUTH)
    upstream.upstream.script(Fault(chunk_delay=0.01))
    stream = client(gateway.url).chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    usage = chunks[-1].usage

    server, (call,) = one_request(sink)
    a = call.attributes
    assert a["gen_ai.request.stream"] is True
    assert a["gen_ai.response.time_to_first_chunk"] > 0
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert usage is not None and a["gen_ai.usage.output_tokens"] == usage.completion_tokens
    assert a["gen_ai.response.id"] == chunks[0].id
    # The span covers the whole stream, not just its opening.
    assert (call.end_time - call.start_time) / 1e9 > a["gen_ai.response.time_to_first_chunk"]
    assert call.end_time <= server.end_time
    assert call.status.status_code is not StatusCode.ERROR


def test_a_call_that_retried_and_fell_back_shows_every_attempt_in_order(
    traced_gateway: TracedFactory, upstream: UpstreamServer
) -> None:
    gateway, sink = traced_gateway(
        "model_list:\n"
        + openai_model("primary", upstream)
        + openai_model("primary", upstream)
        + openai_model("backup", upstream)
        + "router_settings: {fallbacks: [{primary: [backup]}]}\n" + AUTH
    )
    upstream.upstream.script(Fault.error(503, "overloaded"), Fault.error(500, "boom"))
    raw = client(gateway.url).chat.completions.with_raw_response.create(model="primary", messages=MESSAGES)

    server, attempts = one_request(sink)
    assert raw.headers["x-lockgate-attempts"] == "3"
    assert [s.attributes["lockgate.model_group"] for s in attempts] == ["primary", "primary", "backup"]
    assert sorted(s.attributes["error.type"] for s in attempts[:2]) == ["500", "503"]
    assert all(s.status.status_code is StatusCode.ERROR for s in attempts[:2])
    assert "error.type" not in attempts[2].attributes
    assert [s.attributes["lockgate.attempt"] for s in attempts] == [1, 2, 3]
    assert server.attributes["lockgate.attempts"] == 3
    assert server.attributes["lockgate.deployment.id"] == attempts[2].attributes["lockgate.deployment.id"]
    assert server.attributes["http.response.status_code"] == 200

    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert 'lockgate_retries_total{lockgate_model_group="primary"' in metrics
    assert 'lockgate_fallbacks_total{lockgate_model_group="backup"' in metrics
    # Scrapes and probes are not traced: the next traced request's span is the second one.
    assert httpx.get(f"{gateway.url}/healthz").status_code == 200
    client(gateway.url).chat.completions.create(model="backup", messages=MESSAGES)
    assert {s.attributes["url.path"] for s in sink.wait_servers(2)} == {"/v1/chat/completions"}
    assert len(sink.servers()) == 2


def test_a_call_that_failed_everywhere_is_an_error_span_with_the_trace_id_in_the_error_response(
    traced_gateway: TracedFactory, upstream: UpstreamServer
) -> None:
    gateway, sink = traced_gateway(
        "model_list:\n" + openai_model("primary", upstream) + openai_model("backup", upstream)
        + "router_settings: {num_retries: 0, fallbacks: [{primary: [backup]}]}\n" + AUTH
    )
    upstream.upstream.default = Fault.error(503, "overloaded")
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": "primary", "messages": MESSAGES},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
    )
    assert response.status_code >= 500

    server, attempts = one_request(sink)
    assert response.headers["x-lockgate-trace-id"] == format(server.context.trace_id, "032x")
    assert len(attempts) == 2
    assert all(s.attributes["error.type"] == "503" for s in attempts)
    assert server.status.status_code is StatusCode.ERROR
    assert server.attributes["http.response.status_code"] == response.status_code
    assert server.attributes["error.type"] == str(response.status_code)
    assert "lockgate.deployment.id" not in server.attributes


def test_client_traceparent_and_baggage_make_the_gateway_spans_children_of_the_agent_span(
    traced_gateway: TracedFactory, upstream: UpstreamServer
) -> None:
    gateway, sink = traced_gateway("model_list:\n" + openai_model("gpt-4o", upstream) + AUTH)
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": "gpt-4o", "messages": MESSAGES},
        headers={
            "Authorization": f"Bearer {MASTER_KEY}",
            "traceparent": f"00-{trace_id}-{parent_id}-01",
            "baggage": "session.id=sess-42,user.id=ada",
        },
    )
    assert response.status_code == 200

    server, (call,) = one_request(sink)
    assert format(server.context.trace_id, "032x") == trace_id
    assert server.parent is not None and format(server.parent.span_id, "016x") == parent_id
    assert server.parent.is_remote
    assert call.context.trace_id == server.context.trace_id
    assert response.headers["x-lockgate-trace-id"] == trace_id
    for span in (server, call):
        assert span.attributes["session.id"] == "sess-42" and span.attributes["user.id"] == "ada"
        assert span.attributes["gen_ai.conversation.id"] == "sess-42"
    # The upstream is told the trace too, with the CLIENT span as its parent; baggage stays here.
    sent = upstream.upstream.received[-1].headers
    assert sent["traceparent"] == f"00-{trace_id}-{call.context.span_id:016x}-01"
    assert "baggage" not in {name.lower() for name in sent}


def test_each_upstream_attempt_names_its_own_client_span_in_traceparent(
    traced_gateway: TracedFactory, upstream: UpstreamServer
) -> None:
    gateway, sink = traced_gateway(
        "model_list:\n" + openai_model("gpt-4o", upstream) + openai_model("gpt-4o", upstream) + AUTH
    )
    upstream.upstream.script(Fault.error(503, "overloaded"))
    client(gateway.url).chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True).close()

    server, attempts = one_request(sink)
    sent = [r.headers["traceparent"] for r in upstream.upstream.received]
    trace = format(server.context.trace_id, "032x")
    assert sent == [f"00-{trace}-{a.context.span_id:016x}-01" for a in attempts] and len(sent) == 2


def test_session_header_wins_over_baggage(traced_gateway: TracedFactory, upstream: UpstreamServer) -> None:
    gateway, sink = traced_gateway("model_list:\n" + openai_model("gpt-4o", upstream) + AUTH)
    httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": "gpt-4o", "messages": MESSAGES},
        headers={"Authorization": f"Bearer {MASTER_KEY}", "x-lockgate-session-id": "from-header",
                 "baggage": "session.id=from-baggage"},
    )
    server, _ = one_request(sink)
    assert server.attributes["session.id"] == "from-header"


def test_content_capture_on_records_messages_in_the_conventions_format(
    traced_gateway: TracedFactory, upstream: UpstreamServer
) -> None:
    gateway, sink = traced_gateway(
        "model_list:\n" + openai_model("gpt-4o", upstream) + AUTH + "telemetry: {capture_message_content: true}\n"
    )
    reply = client(gateway.url).chat.completions.create(model="gpt-4o", messages=MESSAGES)

    _, (call,) = one_request(sink)
    inputs = orjson.loads(call.attributes["gen_ai.input.messages"])
    assert inputs == [{"role": "user", "parts": [{"type": "text", "content": "What is the capital of France?"}]}]
    system = orjson.loads(call.attributes["gen_ai.system_instructions"])
    assert system == [{"type": "text", "content": "Answer briefly."}]
    outputs = orjson.loads(call.attributes["gen_ai.output.messages"])
    assert outputs == [{"role": "assistant", "finish_reason": "stop",
                        "parts": [{"type": "text", "content": reply.choices[0].message.content}]}]


def test_content_capture_of_a_stream_assembles_the_streamed_text(
    traced_gateway: TracedFactory, upstream: UpstreamServer
) -> None:
    gateway, sink = traced_gateway(
        "model_list:\n" + openai_model("gpt-4o", upstream) + AUTH + "telemetry: {capture_message_content: true}\n"
    )
    stream = client(gateway.url).chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    _, (call,) = one_request(sink)
    (output,) = orjson.loads(call.attributes["gen_ai.output.messages"])
    assert output["parts"] == [{"type": "text", "content": text}] and output["finish_reason"] == "stop"


def test_a_stream_cut_after_its_first_byte_is_an_error_on_both_spans(
    traced_gateway: TracedFactory, upstream: UpstreamServer
) -> None:
    gateway, sink = traced_gateway("model_list:\n" + openai_model("gpt-4o", upstream) + AUTH)
    upstream.upstream.script(Fault(after_chunks=2, cut=True))
    with httpx.stream(
        "POST", f"{gateway.url}/v1/chat/completions",
        json={"model": "gpt-4o", "messages": MESSAGES, "stream": True},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
    ) as response:
        body = response.read()
    assert b'"error"' in body

    server, (call,) = one_request(sink)
    assert call.status.status_code is StatusCode.ERROR and call.attributes["error.type"] == "stream_cut"
    assert server.status.status_code is StatusCode.ERROR and server.attributes["error.type"] == "stream_cut"


def test_embeddings_get_an_embeddings_client_span(traced_gateway: TracedFactory, upstream: UpstreamServer) -> None:
    gateway, sink = traced_gateway("model_list:\n" + openai_model("text-embedding-3-small", upstream) + AUTH)
    client(gateway.url).embeddings.create(model="text-embedding-3-small", input="hello", dimensions=8)

    server, (call,) = one_request(sink)
    assert server.name == "POST /v1/embeddings"
    assert call.name == "embeddings text-embedding-3-small-upstream"
    assert call.attributes["gen_ai.operation.name"] == "embeddings"
    assert call.attributes["openinference.span.kind"] == "EMBEDDING"
    assert call.attributes["gen_ai.embeddings.dimension.count"] == 8


def test_requests_refused_before_routing_still_get_a_server_span_and_the_header(
    traced_gateway: TracedFactory, upstream: UpstreamServer
) -> None:
    gateway, sink = traced_gateway("model_list:\n" + openai_model("gpt-4o", upstream) + AUTH)
    response = httpx.post(f"{gateway.url}/v1/chat/completions", content=b"{not json",
                          headers={"Authorization": f"Bearer {MASTER_KEY}"})
    assert response.status_code == 400

    server, children = one_request(sink)
    assert children == []
    assert server.attributes["http.response.status_code"] == 400
    assert response.headers["x-lockgate-trace-id"] == format(server.context.trace_id, "032x")


def test_a_stream_from_a_provider_that_does_not_time_its_first_chunk_still_gets_one(
    traced_gateway: TracedFactory,
) -> None:
    gateway, sink = traced_gateway(
        "model_list:\n  - model_name: slow\n    litellm_params: {model: fake/slow-50ms-drip-5ms}\n" + AUTH
    )
    list(client(gateway.url).chat.completions.create(model="slow", messages=MESSAGES, stream=True))

    _, (call,) = one_request(sink)
    ttfc = call.attributes["gen_ai.response.time_to_first_chunk"]
    assert 0 < ttfc < (call.end_time - call.start_time) / 1e9
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert "gen_ai_client_operation_time_to_first_chunk_seconds_count{" in metrics


def test_a_breaker_opening_is_a_span_event_and_a_gauge(traced_gateway: TracedFactory, upstream: UpstreamServer) -> None:
    gateway, sink = traced_gateway(
        "model_list:\n" + openai_model("solo", upstream)
        + "router_settings: {num_retries: 0}\nbreakers: {failure_threshold: 2, reset_timeout: 60}\n" + AUTH
    )
    upstream.upstream.default = Fault.error(500, "boom")
    before = httpx.get(f"{gateway.url}/metrics").text
    assert 'lockgate_breaker_state{lockgate_deployment_id="solo#0"' in before
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    body = {"model": "solo", "messages": MESSAGES}
    for _ in range(2):
        assert httpx.post(f"{gateway.url}/v1/chat/completions", json=body, headers=headers).status_code >= 500

    servers = sink.wait_servers(2)
    events = [e for s in servers for e in s.events if e.name.startswith("lockgate.breaker.")]
    assert [e.name for e in events] == ["lockgate.breaker.open"]
    assert events[0].attributes["deployment"] == "solo#0"
    gauge = next(
        line for line in httpx.get(f"{gateway.url}/metrics").text.splitlines()
        if line.startswith('lockgate_breaker_state{lockgate_deployment_id="solo#0"')
    )
    assert gauge.endswith(" 2.0")


def test_an_unexpected_error_is_a_500_that_still_carries_the_request_and_trace_ids(
    traced_gateway: TracedFactory, upstream: UpstreamServer
) -> None:
    gateway, sink = traced_gateway("model_list:\n" + openai_model("gpt-4o", upstream) + AUTH)

    async def broken(request: object) -> None:
        raise RuntimeError(f"bug while holding {UPSTREAM_KEY}")

    # A route with a bug, behind the real middleware stack (a stand-in for any unforeseen failure).
    gateway.app.router.add_route("/v1/broken", broken, methods=["POST"])
    response = httpx.post(f"{gateway.url}/v1/broken", headers={"authorization": f"Bearer {MASTER_KEY}"})

    assert response.status_code == 500
    error = response.json()["error"]
    assert error["type"] == "server_error" and response.headers["x-request-id"] in error["message"]
    assert UPSTREAM_KEY not in response.text
    (server,) = sink.wait_servers(1)
    assert response.headers["x-lockgate-trace-id"] == format(server.context.trace_id, "032x")
    assert server.attributes["error.type"] == "RuntimeError"
    assert server.attributes["http.response.status_code"] == 500
    assert server.status.status_code is StatusCode.ERROR


def test_a_message_is_traced_like_a_chat(upstream: UpstreamServer, traced_gateway: TracedFactory) -> None:
    gateway, sink = traced_gateway("model_list:\n" + openai_model("gpt-4o", upstream))
    reply = anthropic.Anthropic(base_url=gateway.url, api_key="unused", max_retries=0).messages.with_raw_response \
        .create(model="gpt-4o", max_tokens=64, messages=[{"role": "user", "content": "What is the capital of France?"}])
    [server] = sink.wait_servers()
    assert server.name == "POST /v1/messages"
    assert f"{server.context.trace_id:032x}" == reply.headers["x-lockgate-trace-id"]
    [attempt] = sink.children(server)
    attributes = dict(attempt.attributes or {})
    assert attempt.name == "chat gpt-4o-upstream"
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.max_tokens"] == 64
    assert attributes["gen_ai.usage.output_tokens"] == reply.parse().usage.output_tokens


def test_a_response_is_traced_like_a_chat(upstream: UpstreamServer, traced_gateway: TracedFactory) -> None:
    gateway, sink = traced_gateway("model_list:\n" + openai_model("gpt-4o", upstream))
    reply = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0).responses \
        .with_raw_response.create(model="gpt-4o", input="hello", max_output_tokens=64)
    [server] = sink.wait_servers()
    assert server.name == "POST /v1/responses"
    assert f"{server.context.trace_id:032x}" == reply.headers["x-lockgate-trace-id"]
    [attempt] = sink.children(server)
    attributes = dict(attempt.attributes or {})
    assert (attempt.name, attributes["gen_ai.operation.name"]) == ("chat gpt-4o-upstream", "chat")
    assert attributes["gen_ai.request.max_tokens"] == 64
    usage = reply.parse().usage
    assert usage is not None and attributes["gen_ai.usage.output_tokens"] == usage.output_tokens
