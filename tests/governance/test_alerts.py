"""Budget alerts reach real local webhook receivers once per threshold, with retries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from gateway.testing.upstream import UpstreamServer
from gateway.testing.webhook_receiver import WebhookReceiver
from tests.conftest import GatewayFactory
from tests.governance.test_budgets import KEY, ask, budget_yaml


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver(fail_first=2).start()
    yield server
    server.stop()


def test_thresholds_fire_once_each_to_slack_and_json_webhooks(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    base = f"http://127.0.0.1:{receiver.port}"
    budgets = (
        "{teams: {eng: [{limit_usd: 0.0015, period: daily}]}, alerts: {thresholds: [0.5, 1.0], "
        f"backoff_seconds: 0.01, webhooks: [{{url: '{base}/slack', format: slack}}, {{url: '{base}/json'}}]}}}}"
    )
    gateway = gateway_factory(budget_yaml(upstream, f"sqlite:///{tmp_path / 'db'}", budgets))
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=KEY, max_retries=0)
    ask(client)  # 33%: nothing
    ask(client)  # 67%: crosses 50%
    posts = receiver.wait_for(2)
    ask(client)  # 100%
    posts = receiver.wait_for(4)

    slack = [p for path, p in posts if path == "/slack"]
    generic = [p for path, p in posts if path == "/json"]
    assert [p["threshold"] for p in generic] == [0.5, 1.0]
    assert generic[0]["scope"] == {"kind": "team", "id": "eng"} and generic[0]["period"] == "daily"
    assert generic[1]["spent_usd"] == 0.0015 and generic[1]["limit_usd"] == 0.0015
    assert "team 'eng' reached 50% of its daily budget" in slack[0]["text"]
    assert receiver.attempts == 6  # two 503s were retried
