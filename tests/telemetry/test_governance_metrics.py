"""Governance and oversight show on `/metrics` (policy verdicts, budget refusals and spend, rate limits)
and a response says what it cost."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from gateway.testing.upstream import UpstreamServer
from tests.conftest import MASTER_KEY, UPSTREAM_KEY, GatewayFactory
from tests.policies.helpers import ask, client
from tests.policies.oversight import WIRE, Admin, hold_config, sqlite_url

MESSAGES = [{"role": "user", "content": "hi"}]


def series(text: str, name: str, *labels: str) -> float:
    """The value of the one Prometheus sample named `name` carrying every label given."""
    (line,) = [line for line in text.splitlines()
               if line.startswith((name + "{", name + " ")) and all(x in line for x in labels)]
    return float(line.rsplit(" ", 1)[1])


def test_verdicts_refusals_and_spend_are_counted(upstream: UpstreamServer, gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(
        "model_list:\n"
        "  - model_name: gpt-4o\n"
        f"    litellm_params: {{model: openai/gpt-4o-up, api_base: '{upstream.url}', api_key: {UPSTREAM_KEY}}}\n"
        "    model_info: {input_cost_per_token: 0.00001, output_cost_per_token: 0.0001}\n"
        f"general_settings: {{master_key: {MASTER_KEY}}}\n"
        "keys:\n"
        "  - {name: bot, key: sk-bot-0123456789, team: eng, rpm: 2}\n"
        "  - {name: poor, key: sk-poor-0123456789, budgets: [{limit_usd: 0.000001, period: daily}]}\n"
        "policies:\n"
        "  rules:\n"
        "    - {name: audit-everything, when: 'true', action: log}\n"
        "    - {name: no-hot, when: \"has(request.temperature) && request.temperature > 1.5\", action: deny}\n"
    )
    bot = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="sk-bot-0123456789", max_retries=0)
    raw = bot.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    reply = raw.parse()
    with pytest.raises(openai.PermissionDeniedError):
        bot.chat.completions.create(model="gpt-4o", messages=MESSAGES, temperature=1.9)  # type: ignore[arg-type]
    again = bot.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError):  # the third request this minute (the denied one never counted)
        bot.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    poor = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="sk-poor-0123456789", max_retries=0)
    with pytest.raises(openai.RateLimitError):
        poor.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]

    text = httpx.get(f"{gateway.url}/metrics").text
    verdicts = "lockgate_policy_verdicts_total"
    assert series(text, verdicts, 'lockgate_policy_rule="audit-everything"', 'lockgate_policy_action="log"') >= 2
    assert series(text, verdicts, 'lockgate_policy_rule="no-hot"', 'lockgate_policy_action="deny"') == 1
    assert series(text, "lockgate_budget_refusals_total", 'lockgate_budget_scope="key"') == 1
    assert series(text, "lockgate_ratelimit_refusals_total", 'lockgate_ratelimit_kind="requests"') == 1
    assert reply.usage is not None and again.usage is not None
    # The response says what it cost (micro-dollars rounded up, as the budgets charge it).
    first = (reply.usage.prompt_tokens * 10 + reply.usage.completion_tokens * 100) / 1e6
    assert raw.headers["x-lockgate-cost-usd"] == f"{first:.6f}"
    spent = sum(u.prompt_tokens * 10 + u.completion_tokens * 100 for u in (reply.usage, again.usage)) / 1e6
    assert abs(series(text, "lockgate_budget_spend_total") - spent) < 1e-9
    assert abs(series(text, "lockgate_cost_total", 'lockgate_deployment_id="gpt-4o#0"') - spent) < 1e-9


def test_pending_holds_are_a_gauge_that_falls_when_a_reviewer_decides(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gateway = gateway_factory(hold_config(upstream, sqlite_url(tmp_path)))
    admin = Admin(gateway)
    pending_gauge = "lockgate_approval_pending"
    assert series(httpx.get(f"{gateway.url}/metrics").text, pending_gauge) == 0
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(client(gateway).chat.completions.create, model="gpt-4o", messages=ask("pay it"),
                             tools=[WIRE])
        [held] = admin.wait_for_pending()
        # A scrape reads the store's figure (at most once a second): wait out that second, no longer.
        assert series(_scrape_after_refresh(gateway.url), pending_gauge) == 1
        assert admin.decide(held["id"], "approve", reason="ok", by="alice").status_code == 200
        future.result(10)
    assert series(_scrape_after_refresh(gateway.url), pending_gauge) == 0


def _scrape_after_refresh(url: str) -> str:
    """A scrape taken once the gauge's one-second read limit has passed since the previous scrape
    (a documented rate limit, not an event to wait for)."""
    time.sleep(1.05)
    return httpx.get(f"{url}/metrics").text
