"""Held responses through the SDK: wait and approve, wait and deny, opt-in ApprovalPending, deadline."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lockgate_sdk import (
    ApprovalDenied,
    ApprovalPending,
    ApprovalPolicy,
    ApprovalTimeout,
    Gateway,
    GatewayApiError,
)

from gateway.testing.server import GatewayServer
from tests.conftest import MASTER_KEY, GatewayFactory
from tests.policies.oversight import Admin
from tests.sdk.conftest import AGENT_KEY, Spans

WIRE = {
    "type": "function",
    "function": {
        "name": "wire_money",
        "description": "Send money.",
        "parameters": {
            "type": "object",
            "properties": {"account": {"type": "string"}, "amount": {"type": "number"}},
            "required": ["account", "amount"],
        },
    },
}
ASK = [{"role": "user", "content": "pay the invoice"}]
# The fake model calls the first offered tool; the policy holds that call for a human. With a
# hold window of 0 the gateway answers "awaiting approval" at once, so the waiting is the SDK's.
CONFIG = f"""
model_list:
  - model_name: gpt-4o-mini
    litellm_params: {{model: fake/gpt-4o-mini}}
general_settings: {{master_key: {MASTER_KEY}}}
keys:
  - {{name: agent, key: {AGENT_KEY}}}
policies:
  tools:
    - {{name: wires-need-a-human, tool: wire_money, action: hold, message: money leaves the company}}
approvals: {{hold_window: 0, expire_after: 3600}}
"""
FAST = ApprovalPolicy(initial_delay=0.05, max_delay=0.2, timeout=30)


@pytest.fixture
def held_gateway(gateway_factory: GatewayFactory, tmp_path: Path) -> GatewayServer:
    return gateway_factory(CONFIG + f"store: sqlite:///{tmp_path}/held.db\n")


def _in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test to assert on
            out["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def test_wait_then_approve_delivers_the_tool_call(held_gateway: GatewayServer, spans: Spans) -> None:
    session_id = f"ses-{uuid.uuid4()}"
    gateway = Gateway(held_gateway.url, AGENT_KEY, approvals=FAST, tracer_provider=spans.provider)
    with gateway, gateway.session(id=session_id) as session:
        client = session.openai(max_retries=0)
        thread, out = _in_thread(lambda: client.chat.completions.create(model="gpt-4o-mini", messages=ASK, tools=[WIRE]))
        admin = Admin(held_gateway)
        (pending,) = admin.wait_for_pending()
        # The agent sees its own session's hold with its own key (no master key needed).
        listed = session.pending_approvals()
        assert [a.id for a in listed] == [pending["id"]] and listed[0].status == "pending"
        assert admin.decide(pending["id"], "approve", by="rita").status_code == 200
        thread.join(30)
    reply = out["value"]
    call = reply.choices[0].message.tool_calls[0]
    assert call.function.name == "wire_money"
    assert spans.named("invoke_agent")[0].attributes["lockgate.session.outcome"] == "ok"


def test_wait_then_deny_raises_with_the_reviewers_reason(held_gateway: GatewayServer) -> None:
    session_id = f"ses-{uuid.uuid4()}"
    with Gateway(held_gateway.url, AGENT_KEY, approvals=FAST) as gateway, gateway.session(id=session_id) as session:
        client = session.openai(max_retries=0)
        thread, out = _in_thread(lambda: client.chat.completions.create(model="gpt-4o-mini", messages=ASK, tools=[WIRE]))
        admin = Admin(held_gateway)
        (pending,) = admin.wait_for_pending()
        admin.decide(pending["id"], "deny", by="rita", reason="no invoices over 1k this week")
        thread.join(30)
        denied = out["error"]
        assert isinstance(denied, ApprovalDenied)
        assert denied.reason == "no invoices over 1k this week"
        assert denied.reviewer == "rita" and denied.approval_id == pending["id"]
        # The denial was consumed: the session's next request is answered by the model again.
        follow_up = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert "not carried out" not in (follow_up.choices[0].message.content or "")


def test_opt_in_pending_then_resume(held_gateway: GatewayServer) -> None:
    session_id = f"ses-{uuid.uuid4()}"
    raising = ApprovalPolicy(mode="raise")
    with Gateway(held_gateway.url, AGENT_KEY, approvals=raising) as gateway, gateway.session(id=session_id) as session:
        client = session.openai(max_retries=0)
        with pytest.raises(ApprovalPending) as caught:
            client.chat.completions.create(model="gpt-4o-mini", messages=ASK, tools=[WIRE])
        approval_id = caught.value.approval_id
        assert caught.value.session_id == session_id
    # Later (another run of the agent): a reviewer approves, the agent resumes with the same request.
    Admin(held_gateway).decide(approval_id, "approve", by="rita")
    with Gateway(held_gateway.url, AGENT_KEY, approvals=raising) as gateway, gateway.session(id=session_id) as session:
        assert session.wait_for_approval(approval_id).status == "approved"
        reply = session.openai(max_retries=0).chat.completions.create(model="gpt-4o-mini", messages=ASK, tools=[WIRE])
    assert reply.choices[0].message.tool_calls[0].function.name == "wire_money"


def test_no_decision_before_the_deadline_is_a_timeout(held_gateway: GatewayServer) -> None:
    impatient = ApprovalPolicy(initial_delay=0.05, max_delay=0.1, timeout=0.3)
    with Gateway(held_gateway.url, AGENT_KEY, approvals=impatient) as gateway, gateway.session() as session:
        with pytest.raises(ApprovalTimeout) as caught:
            session.openai(max_retries=0).chat.completions.create(model="gpt-4o-mini", messages=ASK, tools=[WIRE])
        assert [a.id for a in session.pending_approvals()] == [caught.value.approval_id]


async def test_async_client_waits_and_gets_the_edited_call(held_gateway: GatewayServer) -> None:
    session_id = f"ses-{uuid.uuid4()}"
    gateway = Gateway(held_gateway.url, AGENT_KEY, approvals=FAST)
    admin = Admin(held_gateway)
    async with gateway.session(id=session_id) as session:
        client = session.async_openai(max_retries=0)
        call = asyncio.create_task(client.chat.completions.create(model="gpt-4o-mini", messages=ASK, tools=[WIRE]))
        (pending,) = await asyncio.to_thread(admin.wait_for_pending)
        edited = await asyncio.to_thread(
            admin.decide, pending["id"], "edit", arguments={"account": "DE00", "amount": 5}, by="rita"
        )
        assert edited.status_code == 200, edited.text
        reply = await call
        await client.close()
    gateway.close()
    arguments = reply.choices[0].message.tool_calls[0].function.arguments
    assert '"amount":5' in arguments.replace(" ", "")


def test_a_session_cannot_see_another_sessions_approval(held_gateway: GatewayServer) -> None:
    raising = ApprovalPolicy(mode="raise")
    with Gateway(held_gateway.url, AGENT_KEY, approvals=raising) as gateway:
        with gateway.session() as owner, pytest.raises(ApprovalPending) as caught:
            owner.openai(max_retries=0).chat.completions.create(model="gpt-4o-mini", messages=ASK, tools=[WIRE])
        with gateway.session() as stranger:
            assert stranger.pending_approvals() == []
            with pytest.raises(GatewayApiError) as missing:
                stranger.approvals.get(caught.value.approval_id)
    assert missing.value.status == 404


@pytest.mark.parametrize("api", ["anthropic", "responses"])
def test_the_other_apis_clients_wait_for_the_approval_too(held_gateway: GatewayServer, api: str) -> None:
    """The SDK's wait works on `/v1/messages` and `/v1/responses`: their held answers carry the same
    headers, and the resent request re-attaches to the hold (its translation is the same)."""
    wire = WIRE["function"]
    with Gateway(held_gateway.url, AGENT_KEY, approvals=FAST) as gateway, gateway.session() as session:
        if api == "anthropic":
            tool = {"name": wire["name"], "description": wire["description"], "input_schema": wire["parameters"]}
            client = session.anthropic(max_retries=0)
            thread, out = _in_thread(lambda: client.messages.create(
                model="gpt-4o-mini", max_tokens=64, messages=ASK, tools=[tool]))
        else:
            client = session.openai(max_retries=0)
            thread, out = _in_thread(lambda: client.responses.create(
                model="gpt-4o-mini", input="pay the invoice", tools=[{"type": "function", **wire}]))
        (pending,) = Admin(held_gateway).wait_for_pending()
        Admin(held_gateway).decide(pending["id"], "edit", arguments={"account": "checked", "amount": 2})
        thread.join(30)
    reply = out["value"]
    if api == "anthropic":
        [call] = [block for block in reply.content if block.type == "tool_use"]
        arguments = call.input
    else:
        [call] = [item for item in reply.output if item.type == "function_call"]
        arguments = json.loads(call.arguments)
    assert (call.name, arguments) == ("wire_money", {"account": "checked", "amount": 2})
