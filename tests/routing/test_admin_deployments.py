"""`GET /admin/deployments`: what an operator sees of each deployment's breaker and cooldown."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import openai
import pytest

from gateway.testing.upstream import Fault, UpstreamServer
from tests.conftest import MASTER_KEY, UPSTREAM_KEY, GatewayFactory
from tests.routing.conftest import MESSAGES, config, deployment, sdk


def test_an_open_breaker_and_a_cooldown_are_shown_per_deployment(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(config(
        # Tried in this order but for one request in a million or so (a weighted shuffle).
        deployment("gpt", upstream, "bad", "bad", weight=1000000),
        deployment("gpt", upstream, "limited", "limited", weight=1),
        deployment("gpt", upstream, "good", "good", weight=0.000001),
        router="num_retries: 0, timeout: 5",
        extra=f"breakers: {{failure_threshold: 2, reset_timeout: 60}}\ngeneral_settings: {{master_key: {MASTER_KEY}}}\n",
    ))
    upstream.upstream.model_default["bad"] = Fault.error(502, "bad gateway")
    upstream.upstream.script_for("limited", Fault.error(429, "slow down", retry_after=30))
    client = sdk(gateway).with_options(api_key=MASTER_KEY)
    for _ in range(3):
        client.chat.completions.create(model="gpt", messages=MESSAGES)
    reply = httpx.get(f"{gateway.url}/admin/deployments", headers={"Authorization": f"Bearer {MASTER_KEY}"})
    rows = {row["id"]: row for row in reply.json()["data"]}

    assert (rows["bad"]["breaker"], rows["bad"]["failures"]) == ("open", 2)
    assert rows["limited"]["breaker"] == "closed" and rows["limited"]["cooling_until"] is not None
    assert rows["good"] == {"id": "good", "group": "gpt", "provider": "openai", "model": "good",
                            "server": f"127.0.0.1:{upstream.port}", "breaker": "closed", "failures": 0,
                            "cooling_until": None}
    assert UPSTREAM_KEY not in reply.text
    assert httpx.get(f"{gateway.url}/admin/deployments").status_code == 401


def test_lockgate_deployments_prints_them(upstream: UpstreamServer, gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(config(
        deployment("gpt", upstream, "broken", "broken"), router="num_retries: 0, timeout: 5",
        extra=f"breakers: {{failure_threshold: 1, reset_timeout: 60}}\ngeneral_settings: {{master_key: {MASTER_KEY}}}\n",
    ))
    upstream.upstream.model_default["broken"] = Fault.error(500, "down")
    with pytest.raises(openai.InternalServerError):
        sdk(gateway).with_options(api_key=MASTER_KEY).chat.completions.create(model="gpt", messages=MESSAGES)
    env = {**os.environ, "LOCKGATE_MASTER_KEY": MASTER_KEY, "COLUMNS": "200"}
    shown = subprocess.run([sys.executable, "-m", "gateway", "deployments", "--url", gateway.url],
                           capture_output=True, text=True, env=env, timeout=60, check=False)
    assert shown.returncode == 0, shown.stderr
    [row] = [line for line in shown.stdout.splitlines() if "broken" in line and "gpt" in line]
    assert "open" in row and "openai / broken" in row
