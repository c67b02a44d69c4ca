"""Each new hold is announced to the configured webhooks: generic JSON and Slack-compatible text."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gateway.testing.upstream import UpstreamServer
from tests.conftest import GatewayFactory
from tests.policies.helpers import ask, client
from tests.policies.oversight import WIRE, hold_config, sqlite_url


class Receiver:
    """A real HTTP server on loopback that records what is posted to it."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.arrived = threading.Semaphore(0)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.posts.append((self.path, json.loads(body)))
                self.send_response(204)
                self.end_headers()
                receiver.arrived.release()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def test_a_new_hold_is_announced_as_json_and_to_slack(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, tmp_path: Path, receiver: Receiver
) -> None:
    hooks = f"  webhooks: [{{url: '{receiver.url}/json'}}, {{url: '{receiver.url}/slack', format: slack}}]\n"
    text = hold_config(upstream, sqlite_url(tmp_path), hold_window=0).replace(
        "approvals: {hold_window: 0, expire_after: 3600, keep_alive: 0.2}",
        "approvals:\n  hold_window: 0\n" + hooks,
    )
    gateway = gateway_factory(text)
    reply = client(gateway).chat.completions.create(model="gpt-4o", messages=ask("pay"), tools=[WIRE])
    assert "awaiting human approval" in (reply.choices[0].message.content or "")
    assert receiver.arrived.acquire(timeout=10) and receiver.arrived.acquire(timeout=10)
    posts = dict(receiver.posts)
    approval = posts["/json"]["approval"]
    assert posts["/json"]["event"] == "approval.hold"
    assert approval["calls"][0]["name"] == "wire_money" and approval["status"] == "pending"
    assert "response" not in approval
    slack = posts["/slack"]["text"]
    assert f"*Lockgate hold {approval['id']}*" in slack and "`wire_money`" in slack
    assert f"lockgate approvals approve {approval['id']}" in slack
