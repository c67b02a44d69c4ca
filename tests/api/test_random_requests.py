"""Random malformed requests through the real gateway: never a 500, always an error in the API's shape.

Seeded mutations of a valid agent turn (a value swapped for junk, a key dropped, one added, the JSON
cut short) at the chat, Anthropic messages and Responses endpoints with typical rules on; junk at the
admin and session APIs and in the trace headers. Sending such requests found six 500s (the sixth: a
list as a Responses item's type) and one request that opened a breaker for every client; each has
its own test or fix, and this keeps the next one from landing unseen.
"""

from __future__ import annotations

import json
import logging
import random
from typing import Any

import httpx
import pytest

from gateway.testing.server import GatewayServer
from gateway.testing.upstream import UpstreamServer
from tests.conftest import MASTER_KEY, GatewayFactory, openai_model
from tests.mutations import junk, pick

REQUESTS = 300
RULES = r"""policies:
  max_tokens: {limit: 4096}
  pii: {action: redact}
  deny_patterns: [{name: no-drops, pattern: "drop\\s+table"}]
  rules:
    - {name: hot, when: "has(request.temperature) && request.temperature > 1.5", action: deny}
  tools: [{name: no-deletes, tool: "delete_*", action: deny}]
  loops: {}
"""
TURN: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "mail bob@example.com"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "search", "arguments": "{\"q\": 1}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "found"},
    ],
    "max_tokens": 20, "temperature": 0.5, "stream": False,
    "tools": [{"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}],
}
JUNK: list[Any] = [None, 0, -1, 10**30, 1e308, "", "x" * 300, "²", [], {}, [1, None], {"a": 1}, True, "\u0000", [[]],
                   "NaN", "inf"]


def _junk(rng: random.Random) -> Any:
    return junk(rng, JUNK)


def _mutate(body: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    body = json.loads(json.dumps(body))
    for _ in range(rng.randint(1, 3)):
        place = pick(body, rng, deeper=0.7)
        if place is None:
            continue
        parent, key = place
        roll = rng.random()
        if roll < 0.6:
            parent[key] = _junk(rng)
        elif isinstance(parent, dict) and roll < 0.8:
            del parent[key]
        elif isinstance(parent, dict):
            parent[f"extra_{rng.randrange(9)}"] = _junk(rng)
    return body


def _assert_clean(reply: httpx.Response, what: str) -> None:
    assert reply.status_code < 500, f"{what}: {reply.status_code} {reply.text[:300]}"
    if reply.status_code >= 400 and reply.content:
        error = reply.json()["error"]
        assert isinstance(error["message"], str) and error["message"] and error["type"], what


@pytest.fixture(params=["sqlite", "redis"])
def ruled_gateway(
    request: pytest.FixtureRequest, upstream: UpstreamServer, gateway_factory: GatewayFactory, redis_prefix: str
) -> GatewayServer:
    # Each store refuses different junk (Redis a NaN score, SQLite an integer past 64 bits).
    store = f"store: 'redis://127.0.0.1:6379/0?prefix={redis_prefix}'\n" if request.param == "redis" else ""
    return gateway_factory(
        "model_list:\n" + openai_model("gpt-4o", upstream) + f"general_settings: {{master_key: {MASTER_KEY}}}\n"
        + "routing: {retry_backoff: 0.01, max_backoff: 0.05}\n" + RULES + store
    )


ANTHROPIC_TURN: dict[str, Any] = {
    "model": "gpt-4o",
    "max_tokens": 20,
    "system": [{"type": "text", "text": "be brief"}],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "mail bob@example.com"}]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "searching"}, {"type": "tool_use", "id": "c1", "name": "search", "input": {"q": 1}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "c1", "content": [{"type": "text", "text": "found"}]},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}]},
    ],
    "tools": [{"name": "search", "description": "d", "input_schema": {"type": "object"}}],
    "tool_choice": {"type": "auto"}, "stop_sequences": ["END"], "metadata": {"user_id": "u"}, "stream": False,
}


RESPONSES_TURN: dict[str, Any] = {
    "model": "gpt-4o",
    "instructions": "be brief",
    "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "mail bob@example.com"},
                                     {"type": "input_image", "image_url": "https://example.com/a.png"}]},
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
         "content": [{"type": "output_text", "text": "searching", "annotations": []}]},
        {"type": "function_call", "call_id": "c1", "name": "search", "arguments": "{\"q\": 1}", "id": "fc_1"},
        {"type": "function_call_output", "call_id": "c1", "output": "found"},
    ],
    "tools": [{"type": "function", "name": "search", "parameters": {"type": "object"}, "strict": False}],
    "tool_choice": "auto", "max_output_tokens": 20, "temperature": 0.5, "text": {"format": {"type": "text"}},
    "stream": False,
}
# Each API's shape: its path, a valid turn to mutate, its key header, the seed. Errors are OpenAI's
# shape, or Anthropic's at /v1/messages: both have an "error" object with a message and a type.
SHAPES = {
    "chat": ("/v1/chat/completions", TURN, {"Authorization": f"Bearer {MASTER_KEY}"}, 7),
    "anthropic": ("/v1/messages", ANTHROPIC_TURN, {"x-api-key": MASTER_KEY}, 13),
    "responses": ("/v1/responses", RESPONSES_TURN, {"Authorization": f"Bearer {MASTER_KEY}"}, 13),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_mutated_agent_turns_get_answers_or_400s_and_never_open_a_breaker(
    ruled_gateway: GatewayServer, caplog: pytest.LogCaptureFixture, shape: str
) -> None:
    path, turn, key, seed = SHAPES[shape]
    rng = random.Random(seed)
    statuses: dict[int, int] = {}
    headers = {**key, "content-type": "application/json"}
    with caplog.at_level(logging.ERROR), httpx.Client(base_url=ruled_gateway.url, headers=headers, timeout=30) as http:
        for i in range(REQUESTS):
            body = _mutate(turn, rng)
            if rng.random() < 0.3:
                body["stream"] = True
            raw = json.dumps(body).encode()
            reply = http.post(path, content=raw[:-3] if i % 20 == 0 else raw)
            _assert_clean(reply, json.dumps(body)[:400])
            statuses[reply.status_code] = statuses.get(reply.status_code, 0) + 1
    # Requests the upstream chokes on fail alone: no 503 for the ones after them (a breaker opened).
    assert 200 in statuses and 400 in statuses and 503 not in statuses, statuses
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_junk_at_the_admin_and_session_apis_and_in_trace_headers_gets_400s(
    ruled_gateway: GatewayServer, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(11)
    headers = {"Authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"}

    def junk() -> Any:
        return _junk(rng)

    def some(*keys: str) -> dict[str, Any]:
        return {k: junk() for k in rng.sample(keys, rng.randint(0, len(keys)))}

    with caplog.at_level(logging.ERROR), httpx.Client(base_url=ruled_gateway.url, headers=headers, timeout=30) as http:
        for _ in range(REQUESTS):
            session = rng.choice(["s1", "x" * 300, "é"])
            kind = rng.randrange(7)
            if kind == 0:
                reply = http.post("/admin/keys", json=some("name", "team", "models", "budgets", "rate_limits", "key"))
            elif kind == 1:
                params = {k: str(junk()) for k in rng.sample(["action", "since", "until", "limit", "after_seq"], 3)}
                params["group_by"] = rng.choice(["team", "key", str(junk())])
                reply = http.get(rng.choice(["/admin/audit", "/admin/spend"]), params=params)
            elif kind == 2:
                action = rng.choice(["approve", "deny", "edit", "zap"])
                reply = http.post(f"/admin/approvals/apr_x/{action}", json=some("call_id", "arguments", "reason", "by"))
            elif kind == 3:
                reply = http.put(f"/v1/lockgate/sessions/{session}/state/k", json=some("value", "version"))
            elif kind == 4:
                events = rng.choice([junk(), [some("type", "name", "call_id", "status", "duration_ms", "result")]])
                reply = http.post(f"/v1/lockgate/sessions/{session}/events", json={"events": events})
            elif kind == 5:
                reply = http.get(f"/v1/lockgate/sessions/{session}/events", params={"limit": str(junk())})
            else:
                reply = http.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": TURN["messages"][:2]},
                                  headers={"traceparent": rng.choice(["junk", "00-" + "0" * 32 + "-" + "1" * 16 + "-01"]),
                                           "baggage": rng.choice(["session.id=%zz", "=", "k=v;p", "a" * 5000]),
                                           "x-lockgate-session-id": rng.choice(["", "x" * 500, "s1"])})
            _assert_clean(reply, f"{reply.request.method} {reply.request.url.path}")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
