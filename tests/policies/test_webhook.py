"""Each new hold is announced to the configured webhooks: generic JSON and Slack-compatible text."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.testing.tcp_proxy import ConnectProxy
from gateway.testing.upstream import UpstreamServer
from gateway.testing.webhook_receiver import WebhookReceiver
from tests.conftest import GatewayFactory
from tests.policies.helpers import ask, client
from tests.policies.oversight import WIRE, hold_config, sqlite_url
from tests.replicas import gateway_replicas


def with_webhooks(upstream: UpstreamServer, tmp_path: Path, hooks: str) -> str:
    return hold_config(upstream, sqlite_url(tmp_path), hold_window=0).replace(
        "approvals: {hold_window: 0, expire_after: 3600, keep_alive: 0.2}",
        "approvals:\n  hold_window: 0\n" + hooks,
    )


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver().start()
    yield server
    server.stop()


def test_a_new_hold_is_announced_as_json_and_to_slack(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, tmp_path: Path, receiver: WebhookReceiver
) -> None:
    hooks = f"  webhooks: [{{url: '{receiver.url}/json'}}, {{url: '{receiver.url}/slack', format: slack}}]\n"
    gateway = gateway_factory(with_webhooks(upstream, tmp_path, hooks))
    reply = client(gateway).chat.completions.create(model="gpt-4o", messages=ask("pay"), tools=[WIRE])
    assert "awaiting human approval" in (reply.choices[0].message.content or "")
    posts = dict(receiver.wait_for(2))
    approval = posts["/json"]["approval"]
    assert posts["/json"]["event"] == "approval.hold"
    assert approval["calls"][0]["name"] == "wire_money" and approval["status"] == "pending"
    assert "response" not in approval
    slack = posts["/slack"]["text"]
    assert f"*Lockgate hold {approval['id']}*" in slack and "`wire_money`" in slack
    assert f"lockgate approvals approve {approval['id']}" in slack


def test_a_webhook_briefly_down_still_hears_of_the_hold(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    flaky = WebhookReceiver(fail_first=2).start()  # a Slack hiccup: two 503s
    try:
        gateway = gateway_factory(with_webhooks(upstream, tmp_path, f"  webhooks: [{{url: '{flaky.url}/json'}}]\n"))
        client(gateway).chat.completions.create(model="gpt-4o", messages=ask("pay"), tools=[WIRE])
        [(_, posted)] = flaky.wait_for(1)
        assert posted["approval"]["calls"][0]["name"] == "wire_money"
        assert flaky.attempts == 3
    finally:
        flaky.stop()


def test_a_hung_webhook_does_not_hold_up_a_stopping_gateway(upstream: UpstreamServer, tmp_path: Path) -> None:
    hung = WebhookReceiver(hang=True).start()
    config = tmp_path / "lockgate.yaml"
    config.write_text(with_webhooks(upstream, tmp_path, f"  webhooks: [{{url: '{hung.url}/json', timeout: 60}}]\n"))
    try:
        with gateway_replicas(config, 1) as [(url, process)]:
            agent = client(type("Gateway", (), {"url": url})())  # type: ignore[arg-type]
            agent.chat.completions.create(model="gpt-4o", messages=ask("pay"), tools=[WIRE])
            hung.wait_for_attempts(1)
            process.terminate()
            process.wait(30)  # the webhook's own timeout is 60 s: it used to wait all of it
    finally:
        hung.stop()
    log = (tmp_path / "replica-0.log").read_text()
    assert "1 hold announcement webhook deliveries given up at shutdown" in log, log
    assert "Traceback" not in log, log


def test_hold_announcements_follow_the_egress_proxy_the_environment_names(
    upstream: UpstreamServer, tmp_path: Path, receiver: WebhookReceiver
) -> None:
    proxy = ConnectProxy().start()
    config = tmp_path / "lockgate.yaml"
    config.write_text(with_webhooks(upstream, tmp_path, f"  webhooks: [{{url: '{receiver.url}/json'}}]\n"))
    try:
        environ = {"HTTP_PROXY": f"http://127.0.0.1:{proxy.port}", "NO_PROXY": "", "no_proxy": ""}
        with gateway_replicas(config, 1, environ=environ) as [(url, _)]:
            agent = client(type("Gateway", (), {"url": url})())  # type: ignore[arg-type]
            agent.chat.completions.create(model="gpt-4o", messages=ask("pay"), tools=[WIRE])
            receiver.wait_for(1)
    finally:
        proxy.stop()
    assert ("POST", f"127.0.0.1:{receiver.port}", None) in proxy.tunnels
