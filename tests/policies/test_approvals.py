"""Hold-for-approval with the official `openai` SDK: approved, edited, denied, expired, retried."""

from __future__ import annotations

import asyncio
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from gateway.testing.upstream import UpstreamServer
from tests.conftest import MASTER_KEY, GatewayFactory
from tests.policies.helpers import ask, client
from tests.policies.oversight import WIRE, Admin, hold_config, sqlite_url

PAY = ask("pay the invoice")


def test_held_call_approved_reaches_the_agent_as_an_ordinary_tool_call(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gateway = gateway_factory(hold_config(upstream, sqlite_url(tmp_path)))
    admin = Admin(gateway)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(client(gateway).chat.completions.create, model="gpt-4o", messages=PAY, tools=[WIRE])
        [pending] = admin.wait_for_pending()
        assert [c["name"] for c in pending["calls"]] == ["wire_money"]
        assert pending["calls"][0]["message"] == "money leaves the company"
        assert admin.decide(pending["id"], "approve", reason="invoice checked", by="alice").status_code == 200
        reply = future.result(10)
    [call] = reply.choices[0].message.tool_calls or []
    assert (call.function.name, json.loads(call.function.arguments)) == ("wire_money", {"account": "example", "amount": 1})
    assert reply.choices[0].finish_reason == "tool_calls"
    assert upstream.upstream.count("/chat/completions") == 1
    shown = admin.http.get(f"/admin/approvals/{pending['id']}").json()
    assert shown["status"] == "decided" and shown["calls"][0]["decision"]["by"] == "alice"


def test_edited_arguments_are_checked_against_the_tool_schema_then_delivered(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gateway = gateway_factory(hold_config(upstream, sqlite_url(tmp_path)))
    admin = Admin(gateway)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(client(gateway).chat.completions.create, model="gpt-4o", messages=PAY, tools=[WIRE])
        [pending] = admin.wait_for_pending()
        bad = admin.decide(pending["id"], "edit", arguments={"account": "DE89", "amount": "lots"})
        assert bad.status_code == 400
        assert "amount: 'lots' is not of type 'number'" in bad.json()["error"]["message"]
        good = admin.decide(pending["id"], "edit", arguments={"account": "DE89", "amount": 120.5}, reason="fixed")
        assert good.status_code == 200
        reply = future.result(10)
    [call] = reply.choices[0].message.tool_calls or []
    assert json.loads(call.function.arguments) == {"account": "DE89", "amount": 120.5}


@pytest.mark.parametrize("schema", [{"$ref": "#/nowhere"}, {"type": "object", "properties": {"amount": {"type": "nope"}}}])
def test_an_edit_against_the_agents_own_broken_schema_is_taken_as_it_is(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, tmp_path: Path, schema: dict[str, object]
) -> None:
    # The schema is the agent's: one that points nowhere, or is not a schema, was a 500 for the reviewer.
    wire = {"type": "function", "function": {"name": "wire_money", "parameters": schema}}
    gateway = gateway_factory(hold_config(upstream, sqlite_url(tmp_path)))
    admin = Admin(gateway)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(client(gateway).chat.completions.create, model="gpt-4o", messages=PAY, tools=[wire])
        [pending] = admin.wait_for_pending()
        edited = admin.decide(pending["id"], "edit", arguments={"account": "DE89", "amount": 7})
        assert edited.status_code == 200, edited.text
        reply = future.result(10)
    [call] = reply.choices[0].message.tool_calls or []
    assert json.loads(call.function.arguments) == {"account": "DE89", "amount": 7}


@pytest.mark.parametrize("stream", [False, True])
def test_a_denial_reaches_the_model_as_text_never_as_a_tool(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, tmp_path: Path, stream: bool
) -> None:
    gateway = gateway_factory(hold_config(upstream, sqlite_url(tmp_path)))
    admin = Admin(gateway)

    def run() -> tuple[str, list[str], str | None]:
        c = client(gateway)
        if not stream:
            reply = c.chat.completions.create(model="gpt-4o", messages=PAY, tools=[WIRE])
            message = reply.choices[0].message
            return message.content or "", [t.function.name for t in message.tool_calls or ()], reply.choices[0].finish_reason
        text, tools, finish = "", [], None
        for chunk in c.chat.completions.create(model="gpt-4o", messages=PAY, tools=[WIRE], stream=True):
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                tools += [t.function.name or "" for t in chunk.choices[0].delta.tool_calls or () if t.function]
                finish = chunk.choices[0].finish_reason or finish
        return text, tools, finish

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(run)
        [pending] = admin.wait_for_pending()
        admin.decide(pending["id"], "deny", reason="not this vendor", by="bob")
        text, tools, finish = future.result(10)
    assert tools == [] and finish == "stop"
    assert "The call to `wire_money` was not carried out: bob denied it (not this vendor)" in text


def test_past_the_window_the_client_hears_it_awaits_approval_and_gets_the_decision_next_time(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gateway = gateway_factory(hold_config(upstream, sqlite_url(tmp_path), hold_window=0))
    admin = Admin(gateway)
    agent = client(gateway, **{"x-lockgate-session-id": "sess-7"})
    first = agent.chat.completions.create(model="gpt-4o", messages=PAY, tools=[WIRE])
    [pending] = admin.pending()
    text = first.choices[0].message.content or ""
    assert f"awaiting human approval (approval id {pending['id']})" in text
    assert first.choices[0].finish_reason == "stop" and not first.choices[0].message.tool_calls

    admin.decide(pending["id"], "approve", by="carol")
    follow_up = [*PAY, {"role": "assistant", "content": text}, {"role": "user", "content": "any news?"}]
    second = agent.chat.completions.create(model="gpt-4o", messages=follow_up, tools=[WIRE])  # type: ignore[arg-type]
    assert [t.function.name for t in second.choices[0].message.tool_calls or ()] == ["wire_money"]
    assert upstream.upstream.count("/chat/completions") == 1
    # Delivered once: the session's next request goes to the model again.
    agent.chat.completions.create(model="gpt-4o", messages=ask("thanks"))
    assert upstream.upstream.count("/chat/completions") == 2


def test_an_undecided_hold_expires_to_a_denial(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gateway = gateway_factory(hold_config(upstream, sqlite_url(tmp_path), hold_window=0, expire_after=0.3))
    agent = client(gateway, **{"x-lockgate-session-id": "sess-exp"})
    first = agent.chat.completions.create(model="gpt-4o", messages=PAY, tools=[WIRE])
    assert "awaiting human approval" in (first.choices[0].message.content or "")
    time.sleep(0.35)  # let the hold outlive expire_after: what is tested is the passing of time itself
    later = agent.chat.completions.create(model="gpt-4o", messages=ask("and?"))
    assert "The call to `wire_money` was not carried out: it expired unreviewed" in (later.choices[0].message.content or "")
    assert not later.choices[0].message.tool_calls
    assert upstream.upstream.count("/chat/completions") == 1


def test_a_client_retry_during_a_hold_reattaches_without_a_second_model_call(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gateway = gateway_factory(hold_config(upstream, sqlite_url(tmp_path)))
    admin = Admin(gateway)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(client(gateway).chat.completions.create, model="gpt-4o", messages=PAY, tools=[WIRE])
        [pending] = admin.wait_for_pending()
        # The same request again, as a client would after a read timeout.
        retry = pool.submit(client(gateway).chat.completions.create, model="gpt-4o", messages=PAY, tools=[WIRE])
        admin.decide(pending["id"], "approve")
        replies = [first.result(10), retry.result(10)]
    assert upstream.upstream.count("/chat/completions") == 1
    assert len(admin.http.get("/admin/approvals").json()["data"]) == 1
    for reply in replies:
        assert [t.function.name for t in reply.choices[0].message.tool_calls or ()] == ["wire_money"]


def test_the_admin_api_needs_the_master_key(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    from tests.policies.helpers import OPS_KEY

    gateway = gateway_factory(hold_config(upstream, sqlite_url(tmp_path)))
    admin = Admin(gateway)
    response = admin.http.get("/admin/approvals", headers={"Authorization": f"Bearer {OPS_KEY}"})
    assert response.status_code == 403
    assert admin.decide("apr_nope", "approve").status_code == 400


def test_a_waiting_stream_gets_keep_alive_comments_and_no_held_tool_delta(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    import httpx

    from tests.conftest import MASTER_KEY

    gateway = gateway_factory(hold_config(upstream, sqlite_url(tmp_path), hold_window=1.0, keep_alive=0.2))
    body = {"model": "gpt-4o", "messages": PAY, "tools": [WIRE], "stream": True}
    with httpx.Client(timeout=10) as http:
        raw = http.post(f"{gateway.url}/v1/chat/completions", json=body,
                        headers={"Authorization": f"Bearer {MASTER_KEY}"}).content
    events = [e for e in raw.split(b"\n\n") if e]
    assert events[0].startswith(b'data: {"id"') and b'"role":"assistant"' in events[0]
    assert b": keep-alive" in events
    assert not any(b"tool_calls" in e and b"wire_money" in e for e in events)
    assert b"awaiting human approval" in events[-3] and events[-1] == b"data: [DONE]"


def test_every_pending_hold_is_listed_however_many_decided_ones_are_kept(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    # Decided approvals are kept for a day. The listing used to take the first 200 approvals by id
    # (random) and filter them after, so with 300 kept a reviewer saw only some of the pending ones.
    gateway = gateway_factory(hold_config(upstream, sqlite_url(tmp_path), hold_window=0))
    admin = Admin(gateway)

    async def hold(n: int) -> str:
        async with httpx.AsyncClient(base_url=gateway.url, headers={"Authorization": f"Bearer {MASTER_KEY}"},
                                     timeout=30) as http:
            reply = await http.post("/v1/chat/completions", json={
                "model": "gpt-4o", "messages": ask(f"pay invoice {n}"), "tools": [WIRE]})
        text = reply.json()["choices"][0]["message"]["content"]
        return re.search(r"approval id (apr_\w+)", text).group(1)  # type: ignore[union-attr]

    async def hold_all() -> list[str]:
        return await asyncio.gather(*(hold(n) for n in range(300)))

    ids = asyncio.run(hold_all())
    for approval_id in ids[20:]:
        assert admin.decide(approval_id, "deny", reason="not today").status_code == 200

    assert sorted(a["id"] for a in admin.pending()) == sorted(ids[:20])
    assert len(admin.http.get("/admin/approvals", params={"status": "decided"}).json()["data"]) == 200  # the limit


def test_decided_holds_can_be_listed_newest_first(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gateway = gateway_factory(hold_config(upstream, sqlite_url(tmp_path), hold_window=0))
    admin = Admin(gateway)
    for session in ("first", "second", "third"):
        client(gateway, **{"x-lockgate-session-id": session}).chat.completions.create(  # (a new body: a new hold)
            model="gpt-4o", messages=ask(f"pay the {session} invoice"), tools=[WIRE])
        [pending] = admin.wait_for_pending()
        admin.decide(pending["id"], "deny")

    def listed(order: str) -> list[str]:
        reply = admin.http.get("/admin/approvals", params={"status": "decided", "order": order})
        return [a["session_id"] for a in reply.json()["data"]]
    assert listed("newest") == ["third", "second", "first"]
    assert listed("oldest") == ["first", "second", "third"]
    assert admin.http.get("/admin/approvals", params={"order": "random"}).status_code == 400
