"""Tool-call rules on model responses, JSON and streaming (the fake model calls the first tool offered)."""

from __future__ import annotations

import json

import openai
import pytest

from gateway.testing.upstream import UpstreamServer
from tests.conftest import GatewayFactory
from tests.policies.helpers import ask, client, config, tool

POLICIES = """
tools:
  - {name: no-deletes, tool: "delete_*", action: deny, message: deleting needs a ticket}
rules:
  - name: no-wire-to-offshore
    phase: tool_call
    when: "tool.name == 'wire_money' && tool.args.account.startsWith('KY')"
    action: deny
    message: offshore transfers are blocked
"""


def test_a_denied_tool_call_is_a_403(upstream: UpstreamServer, gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(config(upstream, POLICIES))
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client(gateway).chat.completions.create(
            model="gpt-4o", messages=ask("clean up"), tools=[tool("delete_user", id="string")]
        )
    assert caught.value.code == "policy_violation"
    assert "no-deletes" in caught.value.message and "deleting needs a ticket" in caught.value.message


def test_a_denied_tool_call_in_a_stream_never_reaches_the_client(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(config(upstream, POLICIES))
    seen = []
    with pytest.raises(openai.APIError, match="no-deletes"):
        for chunk in client(gateway).chat.completions.create(
            model="gpt-4o", messages=ask("clean up"), tools=[tool("delete_user", id="string")], stream=True
        ):
            seen.append(chunk)
    assert seen, "the role chunk flowed before the tool call was judged"
    assert not any(c.choices and c.choices[0].delta.tool_calls for c in seen)


def test_cel_over_parsed_arguments(upstream: UpstreamServer, gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(config(upstream, POLICIES))
    # The fake model fills string arguments with "example": not offshore, so the call goes through.
    reply = client(gateway).chat.completions.create(
        model="gpt-4o", messages=ask("pay"), tools=[tool("wire_money", account="string")]
    )
    calls = reply.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["wire_money"]
    strict = gateway_factory(config(upstream, POLICIES.replace("startsWith('KY')", "startsWith('ex')")))
    with pytest.raises(openai.PermissionDeniedError, match="offshore transfers are blocked"):
        client(strict).chat.completions.create(model="gpt-4o", messages=ask("pay"), tools=[tool("wire_money", account="string")])


def test_allowed_tool_calls_stream_through_whole(upstream: UpstreamServer, gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(config(upstream, POLICIES))
    stream = client(gateway).chat.completions.create(
        model="gpt-4o", messages=ask("weather?"), tools=[tool("get_weather", city="string")], stream=True
    )
    name, arguments, finish = "", "", None
    for chunk in stream:
        for call in chunk.choices[0].delta.tool_calls or () if chunk.choices else ():
            name += call.function.name or "" if call.function else ""
            arguments += call.function.arguments or "" if call.function else ""
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    assert (name, json.loads(arguments), finish) == ("get_weather", {"city": "example"}, "tool_calls")
