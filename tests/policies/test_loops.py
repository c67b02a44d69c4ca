"""Loop detection: a looping agent is escalated from a note the model sees, to a hold, to a denial."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from gateway.policies.loops import Step, detect, history
from gateway.testing.upstream import UpstreamServer
from tests.conftest import GatewayFactory
from tests.policies.helpers import client, config, tool
from tests.policies.oversight import Admin, sqlite_url

LOOPS = "loops: {note_after: 3, hold_after: 5, deny_after: 7}"
SEARCH = tool("search", query="string")


def looping_conversation(repeats: int, result: str = "error: the index is unavailable") -> list[dict[str, Any]]:
    """What an agent sends after calling `search` with the same query `repeats` times."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": "find the quarterly report"}]
    for i in range(repeats):
        messages.append({
            "role": "assistant", "content": None,
            "tool_calls": [{"id": f"call_{i}", "type": "function",
                            "function": {"name": "search", "arguments": '{"query": "quarterly report"}'}}],
        })
        messages.append({"role": "tool", "tool_call_id": f"call_{i}", "content": result})
    return messages


def test_below_the_threshold_nothing_changes(upstream: UpstreamServer, gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(config(upstream, LOOPS))
    messages = looping_conversation(2)
    client(gateway, **{"x-lockgate-session-id": "s1"}).chat.completions.create(
        model="gpt-4o", messages=messages, tools=[SEARCH]  # type: ignore[arg-type]
    )
    assert upstream.upstream.received[-1].body["messages"] == messages


def test_a_looping_agent_is_noted_then_held_then_denied(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    approvals = f"approvals: {{hold_window: 0}}\nstore: '{sqlite_url(tmp_path)}'\n"
    gateway = gateway_factory(config(upstream, LOOPS, approvals))
    admin = Admin(gateway)
    agent = client(gateway, **{"x-lockgate-session-id": "s-loop"})

    # 1. A note the model sees.
    agent.chat.completions.create(model="gpt-4o", messages=looping_conversation(3), tools=[SEARCH])  # type: ignore[arg-type]
    note = upstream.upstream.received[-1].body["messages"][-1]
    assert note["role"] == "system"
    assert "the tool 'search' has been called 3 times in a row" in note["content"]
    assert '{"query":"quarterly report"}' in note["content"]

    # 2. A hold: the agent hears its next step awaits a human, and the model is not called.
    held = agent.chat.completions.create(model="gpt-4o", messages=looping_conversation(5), tools=[SEARCH])  # type: ignore[arg-type]
    [pending] = admin.pending()
    assert f"awaiting human approval (approval id {pending['id']})" in (held.choices[0].message.content or "")
    assert pending["calls"][0]["message"].startswith("the agent is looping: the tool 'search' has been called 5 times")
    assert upstream.upstream.count("/chat/completions") == 1
    # Approved, the same request (the agent asking again) goes on to the model.
    admin.decide(pending["id"], "approve", by="hank")
    agent.chat.completions.create(model="gpt-4o", messages=looping_conversation(5), tools=[SEARCH])  # type: ignore[arg-type]
    assert upstream.upstream.count("/chat/completions") == 2

    # 3. A denial.
    with pytest.raises(openai.PermissionDeniedError) as caught:
        agent.chat.completions.create(model="gpt-4o", messages=looping_conversation(7), tools=[SEARCH])  # type: ignore[arg-type]
    assert "'loops'" in caught.value.message and "called 7 times in a row" in caught.value.message
    assert upstream.upstream.count("/chat/completions") == 2


def test_a_reviewer_can_stop_a_held_loop(upstream: UpstreamServer, gateway_factory: GatewayFactory, tmp_path: Path) -> None:
    approvals = f"approvals: {{hold_window: 0}}\nstore: '{sqlite_url(tmp_path)}'\n"
    gateway = gateway_factory(config(upstream, LOOPS, approvals))
    admin = Admin(gateway)
    agent = client(gateway)
    agent.chat.completions.create(model="gpt-4o", messages=looping_conversation(6), tools=[SEARCH])  # type: ignore[arg-type]
    [pending] = admin.pending()
    admin.decide(pending["id"], "deny", by="ivan", reason="it will never find it")
    with pytest.raises(openai.PermissionDeniedError, match=r"ivan stopped it \(it will never find it\)"):
        agent.chat.completions.create(model="gpt-4o", messages=looping_conversation(6), tools=[SEARCH])  # type: ignore[arg-type]
    assert upstream.upstream.count("/chat/completions") == 0


def test_different_results_are_progress_not_a_loop(upstream: UpstreamServer, gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(config(upstream, LOOPS))
    messages = looping_conversation(8)
    for i, message in enumerate(messages):
        if message["role"] == "tool":
            message["content"] = f"page {i}"
    client(gateway).chat.completions.create(model="gpt-4o", messages=messages, tools=[SEARCH])  # type: ignore[arg-type]
    assert upstream.upstream.received[-1].body["messages"] == messages


def test_ping_pong_between_two_calls_counts_in_rounds() -> None:
    a, b = Step("read", '{"f":1}', "same"), Step("write", '{"f":1}', "ok")
    loop = detect([Step("start", "{}", "x"), a, b, a, b, a, b])
    assert loop is not None and (loop.kind, loop.length, loop.tools) == ("ping_pong", 3, ("read", "write"))
    assert "alternated 3 times" in loop.describe()


def eager_detect(messages: list[Any], window: int) -> tuple[str, int, tuple[str, ...], str] | None:
    """The detection as first written: every call's step built up front, results by digest."""
    def canonical(arguments: Any) -> str:
        if isinstance(arguments, str):
            try:
                arguments = orjson.loads(arguments)
            except orjson.JSONDecodeError:
                return str(arguments)
        return orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS).decode()

    def digest(content: Any) -> str:
        raw = content.encode() if isinstance(content, str) else orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
        return hashlib.blake2b(raw, digest_size=12).hexdigest()

    calls, results = [], {}
    for message in messages:
        if not isinstance(message, dict):
            continue
        if message.get("role") == "assistant":
            for call in message.get("tool_calls") or ():
                if isinstance(call, dict):
                    function = call.get("function") or {}
                    calls.append((str(call.get("id") or ""), str(function.get("name") or ""),
                                  canonical(function.get("arguments"))))
        elif message.get("role") == "tool":
            results[str(message.get("tool_call_id") or "")] = digest(message.get("content"))
    steps = [Step(tool, args, results.get(cid)) for cid, tool, args in calls[-window:]]
    if len(steps) < 2:
        return None
    last, run = steps[-1], 1
    for step in reversed(steps[:-1]):
        if not step.same_call(last):
            break
        run += 1
    best = ("repeat", run, (last.tool,), last.arguments) if run > 1 else None
    a, b = steps[-1], steps[-2]
    if not a.same_call(b):
        length = 2
        while length < len(steps) and steps[-1 - length].same_call(steps[-1 - (length % 2)]):
            length += 1
        if length // 2 > 1 and (best is None or length // 2 > best[1]):
            best = ("ping_pong", length // 2, (b.tool, a.tool), a.arguments)
    return best


def test_reading_the_conversation_from_the_end_finds_the_same_loops() -> None:
    rng = random.Random("loops")
    arguments = ['{"q": 1, "p": 2}', '{"p":2,"q":1}', '{"q": 2}', "not json", None, {"q": 1}]
    contents: list[Any] = ["same", "same", "other", None, {"k": [1, 2]}, '{"k": [1, 2]}', "null"]
    found = 0
    for _ in range(3_000):
        messages: list[Any] = [{"role": "user", "content": "go"}]
        for _ in range(rng.randint(0, 14)):
            kind = rng.random()
            call_id = rng.choice(["c1", "c2", "c3", "", None])
            if kind < 0.45:
                calls = [{"id": rng.choice(["c1", "c2", "c3", "", None]), "type": "function",
                          "function": {"name": rng.choice(["a", "b"]), "arguments": rng.choice(arguments)}}
                         for _ in range(rng.choice([1, 1, 1, 2]))]
                messages.append({"role": "assistant", "content": None, "tool_calls": calls})
            elif kind < 0.9:
                messages.append({"role": "tool", "tool_call_id": call_id, "content": rng.choice(contents)})
            else:
                messages.append(rng.choice(["junk", {"role": "user", "content": "more"}]))
        window = rng.randint(4, 10)
        loop = detect(history(messages, window))
        got = None if loop is None else (loop.kind, loop.length, loop.tools, loop.arguments)
        assert got == eager_detect(messages, window), messages
        found += got is not None
    assert found > 100  # loops did come up
