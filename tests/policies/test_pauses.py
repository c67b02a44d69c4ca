"""Pause, resume and stop a session or a key through the admin API, seen by an `openai` SDK client."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

from gateway.testing.upstream import UpstreamServer
from tests.conftest import GatewayFactory
from tests.policies.helpers import OPS_KEY, ask, client
from tests.policies.oversight import Admin, hold_config, sqlite_url


def test_a_paused_session_is_held_and_released_by_resume(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gateway = gateway_factory(hold_config(upstream, sqlite_url(tmp_path)))
    admin = Admin(gateway)
    paused = admin.http.post("/admin/pauses/session/agent-42/pause", json={"reason": "checking its plan", "by": "dana"})
    assert paused.json() == {"target": "session:agent-42", "state": "paused", "by": "dana", "reason": "checking its plan"}
    # Other sessions are not affected.
    client(gateway, **{"x-lockgate-session-id": "other"}).chat.completions.create(model="gpt-4o", messages=ask("hi"))
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(
            client(gateway, **{"x-lockgate-session-id": "agent-42"}).chat.completions.create,
            model="gpt-4o", messages=ask("next step"),
        )
        admin.wait_for_waiting("session:agent-42")
        assert upstream.upstream.count("/chat/completions") == 1
        assert admin.http.post("/admin/pauses/session/agent-42/resume").json()["state"] == "running"
        reply = future.result(10)
    assert "You said: next step" in (reply.choices[0].message.content or "")
    assert upstream.upstream.count("/chat/completions") == 2


def test_past_the_window_a_paused_session_hears_it_is_paused(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gateway = gateway_factory(hold_config(upstream, sqlite_url(tmp_path), hold_window=0))
    Admin(gateway).http.post("/admin/pauses/session/s9/pause", json={"reason": "incident 12"})
    stream = client(gateway, **{"x-lockgate-session-id": "s9"}).chat.completions.create(
        model="gpt-4o", messages=ask("go"), stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text.startswith("This session is paused by an operator (incident 12).")
    assert upstream.upstream.count("/chat/completions") == 0


def test_a_stopped_key_is_refused(upstream: UpstreamServer, gateway_factory: GatewayFactory, tmp_path: Path) -> None:
    gateway = gateway_factory(hold_config(upstream, sqlite_url(tmp_path)))
    Admin(gateway).http.post("/admin/pauses/key/ops/stop", json={"reason": "leaked", "by": "sec"})
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client(gateway, OPS_KEY).chat.completions.create(model="gpt-4o", messages=ask("hi"))
    assert caught.value.code == "policy_violation"
    assert "key:ops was stopped by sec (leaked)" in caught.value.message
    assert caught.value.response.headers["x-should-retry"] == "false"
    client(gateway).chat.completions.create(model="gpt-4o", messages=ask("hi"))  # the master key still works
