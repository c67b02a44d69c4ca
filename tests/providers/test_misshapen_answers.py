"""An upstream that answers 200 with what OpenAI would never send: a clear 502, an error event, or the
answer with its usage unknown; never a 500, a traceback or a cut stream.

An OpenAI-compatible server (a self-hosted one, a proxy in between) can send a finish reason that is
an object or a tool call that is a string. Such answers made 500s in the stream guard and the
metrics, and cut streams mid-way: found by a loopback upstream sending randomly altered answers,
which the last test here keeps doing.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import random
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from aiohttp import web

from gateway.testing.loopback import LoopbackServer
from tests.conftest import MASTER_KEY, GatewayFactory
from tests.mutations import junk, pick

COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "write to bob@example.com"}}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
}
CHUNKS: list[dict[str, Any]] = [
    {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
     "choices": [{"index": 0, "delta": {"role": "assistant", "content": "write to bob@"}}]},
    {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
     "choices": [{"index": 0, "delta": {"content": "example.com now"}}]},
    {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
     "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "t1", "type": "function",
                                                         "function": {"name": "lookup", "arguments": "{}"}}]}}]},
    {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
     "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
]
JUNK: list[Any] = [None, 0, -1, 10**30, "", "²", [], {}, [1, None], {"a": 1}, True, "bob@example.com"]


class OddUpstream:
    """Answers every chat with `answer(body)`: a completion object, or a list of chunks to stream."""

    def __init__(self) -> None:
        self.answer: Any = lambda body: COMPLETION
        # Streams: the last chunk waits for this (set by the test once its client has the first one).
        self.hold_last: threading.Event | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        return app

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        answer = self.answer(body)
        if not body.get("stream"):
            return web.json_response(answer)
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        try:
            for i, chunk in enumerate(answer):
                if self.hold_last is not None and i == len(answer) - 1:
                    await asyncio.to_thread(self.hold_last.wait, 10)
                await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            await response.write(b"data: [DONE]\n\n")
        except ConnectionResetError:
            pass  # the gateway hung up on a bad chunk: what it should do
        return response


@pytest.fixture
def odd() -> Iterator[tuple[OddUpstream, str]]:
    upstream = OddUpstream()
    server = LoopbackServer(upstream.app()).start()
    yield upstream, f"http://127.0.0.1:{server.port}/v1"
    server.stop()


def _gateway(gateway_factory: GatewayFactory, url: str) -> str:
    return gateway_factory(
        "model_list:\n"
        f"  - model_name: gpt-4o\n    litellm_params: {{model: openai/gpt-4o, api_base: '{url}', api_key: sk-up-0123456789}}\n"
        f"general_settings: {{master_key: {MASTER_KEY}}}\n"
        "router_settings: {num_retries: 0}\nbreakers: {enabled: false}\n"
        "policies:\n  pii: {action: redact}\n  tools: [{name: no-deletes, tool: 'delete_*', action: deny}]\n"
        "telemetry: {tracing: true}\n"
    ).url


def _with(path: tuple[Any, ...], value: Any, doc: Any) -> Any:
    doc = copy.deepcopy(doc)
    node = doc
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return doc


def test_a_misshapen_field_the_gateway_reads_is_a_502_naming_it(
    odd: tuple[OddUpstream, str], gateway_factory: GatewayFactory
) -> None:
    upstream, url = odd
    client = openai.OpenAI(base_url=f"{_gateway(gateway_factory, url)}/v1", api_key=MASTER_KEY, max_retries=0)
    for path, value, named in (
        (("choices", 0, "finish_reason"), {"a": 1}, "a finish_reason is not a string"),
        (("choices", 0, "message"), "hello", "a choice's message is misshapen"),
        (("choices", 0, "message", "tool_calls"), "lookup()", "'tool_calls' is not a list of objects"),
    ):
        upstream.answer = lambda body, p=path, v=value: _with(p, v, COMPLETION)
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        assert caught.value.status_code == 502 and caught.value.code == "upstream_bad_response"
        assert named in caught.value.message


def test_misshapen_usage_leaves_the_answer_and_makes_its_usage_unknown(
    odd: tuple[OddUpstream, str], gateway_factory: GatewayFactory
) -> None:
    upstream, url = odd
    upstream.answer = lambda body: _with(("usage", "prompt_tokens"), "²", COMPLETION)
    client = openai.OpenAI(base_url=f"{_gateway(gateway_factory, url)}/v1", api_key=MASTER_KEY, max_retries=0)
    reply = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "write to [REDACTED:email]"


def test_a_misshapen_chunk_after_the_first_byte_ends_the_stream_with_an_error_event(
    odd: tuple[OddUpstream, str], gateway_factory: GatewayFactory
) -> None:
    upstream, url = odd
    upstream.answer = lambda body: [CHUNKS[0], _with(("choices", 0, "index"), [0], CHUNKS[1])]
    upstream.hold_last = threading.Event()
    client = openai.OpenAI(base_url=f"{_gateway(gateway_factory, url)}/v1", api_key=MASTER_KEY, max_retries=0)
    stream = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True)
    first = next(iter(stream))  # its text held back for the PII scan; the bad chunk follows
    upstream.hold_last.set()
    assert first.choices[0].delta.role == "assistant"
    with pytest.raises(openai.APIError) as caught:
        for _ in stream:
            pass
    assert "a choice's index is not a number" in str(caught.value)


def _mutated(doc: Any, rng: random.Random) -> Any:
    doc = copy.deepcopy(doc)
    place = pick(doc, rng, deeper=0.75)
    if place is not None:
        parent, key = place
        parent[key] = junk(rng, JUNK)
    return doc


def test_randomly_altered_answers_get_answers_502s_or_error_events_and_nothing_breaks(
    odd: tuple[OddUpstream, str], gateway_factory: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    upstream, url = odd
    rng = random.Random(5)
    upstream.answer = lambda body: (
        [_mutated(c, rng) if rng.random() < 0.3 else c for c in CHUNKS] if body.get("stream")
        else _mutated(COMPLETION, rng)
    )
    gateway = _gateway(gateway_factory, url)
    statuses: dict[tuple[int, bool], int] = {}
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    with caplog.at_level(logging.ERROR), httpx.Client(base_url=gateway, timeout=30,
                                                      headers={"Authorization": f"Bearer {MASTER_KEY}"}) as http:
        for i in range(200):
            stream = i % 2 == 1
            reply = http.post("/v1/chat/completions", json={**body, "stream": stream})
            statuses[(reply.status_code, stream)] = statuses.get((reply.status_code, stream), 0) + 1
            assert reply.status_code in (200, 403, 502), reply.text
            if stream and reply.status_code == 200:
                events = [e for e in reply.text.split("\n\n") if e.startswith("data: ")]
                assert events and (events[-1] == "data: [DONE]" or '"error"' in events[-1]), reply.text[-300:]
                for event in events[:-1]:
                    json.loads(event[6:])  # every event the client got is whole
    assert (200, False) in statuses and (200, True) in statuses and (502, False) in statuses, statuses
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("lockgate")]
