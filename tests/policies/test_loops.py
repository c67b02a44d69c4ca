"""Loop detection: a looping agent is escalated from a note the model sees, to a hold, to a denial."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

from gateway.policies.loops import Step, detect
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
