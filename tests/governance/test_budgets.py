"""Budgets through a real gateway and the openai SDK: refusals, settlement, streams, store outages."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import httpx
import openai
import pytest

from gateway.store import open_store
from gateway.testing.tcp_proxy import TcpProxy
from gateway.testing.upstream import Fault, UpstreamServer
from tests.conftest import MASTER_KEY, UPSTREAM_KEY, GatewayFactory

KEY = "sk-budget-key-0123456789"
# $0.0001 per output token, inputs free: max_tokens=5 reserves exactly what the upstream then uses
# (its reply is longer than 5 words, so it is cut at 5 completion tokens): 500 micro-dollars a call.
PER_CALL = 500


def budget_yaml(upstream: UpstreamServer, store_url: str, budgets: str, key_budgets: str = "[]") -> str:
    return (
        "model_list:\n"
        "  - model_name: gpt-4o\n"
        f"    litellm_params: {{model: openai/gpt-4o-upstream, api_base: '{upstream.url}', api_key: {UPSTREAM_KEY}}}\n"
        "    model_info: {input_cost_per_token: 0, output_cost_per_token: 0.0001, max_output_tokens: 2000}\n"
        f"general_settings: {{master_key: {MASTER_KEY}}}\n"
        f"keys: [{{name: team-bot, key: {KEY}, team: eng, budgets: {key_budgets}}}]\n"
        f"store: '{store_url}'\n"
        f"budgets: {budgets}\n"
    )


def ask(client: openai.OpenAI, **kw: object) -> object:
    kw.setdefault("max_tokens", 5)
    return client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], **kw  # type: ignore[call-overload]
    )


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path, redis_prefix: str) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'lockgate.db'}"
    return f"redis://127.0.0.1:6379/0?prefix={redis_prefix}"


def test_a_team_budget_refuses_once_spent_with_a_clear_429(
    store_url: str, upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(budget_yaml(upstream, store_url, "{teams: {eng: [{limit_usd: 0.0015, period: daily}]}}"))
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=KEY, max_retries=3)
    for _ in range(3):
        ask(client)
    with pytest.raises(openai.RateLimitError) as refused:
        ask(client)
    error = refused.value
    assert error.status_code == 429 and error.code == "budget_exceeded" and error.type == "insufficient_quota"
    assert error.response.headers["x-should-retry"] == "false"
    assert len(upstream.upstream.received) == 3  # the SDK did not retry, the upstream was not called
    message = error.message
    assert "team 'eng' (daily)" in message and "spent $0.0015 of $0.0015" in message
    assert "resets at" in message and "UTC" in message


def test_settlement_charges_actual_usage_not_the_reservation(
    store_url: str, upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    # Without max_tokens the reservation is the model's output limit (2000 tokens, $0.20);
    # the call then uses a few completion tokens: only those are charged.
    gateway = gateway_factory(budget_yaml(upstream, store_url, "{global: [{limit_usd: 1, period: total}]}"))
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=KEY, max_retries=0)
    reply = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert reply.usage is not None
    expected = reply.usage.completion_tokens * 100
    entries = asyncio.run(_ledger(store_url))
    assert [e.charged["usd_micros"] for e in entries] == [expected]
    assert entries[0].meta == {"key": "team-bot", "team": "eng", "model": "gpt-4o"}
    # Five reservations of $0.20 fill $1 at once; settled calls free theirs, so ten calls in a row pass.
    for _ in range(10):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])


async def _ledger(store_url: str) -> list:  # type: ignore[type-arg]
    store = open_store(store_url)
    try:
        return await store.ledger_range(0, time.time() + 60)
    finally:
        await store.aclose()


def test_streams_settle_usage_and_a_cut_stream_charges_its_reservation(
    store_url: str, upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(budget_yaml(upstream, store_url, "{global: [{limit_usd: 1, period: total}]}"))
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=KEY, max_retries=0)
    chunks = list(ask(client, stream=True))  # type: ignore[call-overload]
    assert chunks
    upstream.upstream.script(Fault(after_chunks=2, cut=True))
    with pytest.raises(openai.APIError):
        list(ask(client, stream=True, max_tokens=7))  # type: ignore[call-overload]
    # The cut stream is settled in the relay's `finally`, after the client already saw the error
    # event: wait (bounded) for its ledger entry.
    deadline = time.monotonic() + 10
    while len(entries := asyncio.run(_ledger(store_url))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    charged = [e.charged["usd_micros"] for e in entries]
    # The whole stream: 5 tokens used. The cut one had no usage: its reservation (7 tokens) is charged.
    assert charged == [PER_CALL, 700]


def test_a_failed_call_releases_its_reservation(
    store_url: str, upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(budget_yaml(upstream, store_url, "{global: [{limit_usd: 0.0005, period: total}]}"))
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=KEY, max_retries=0)
    upstream.upstream.script(*[Fault.error(400, "bad request")])
    with pytest.raises(openai.BadRequestError):
        ask(client)
    ask(client)  # the budget affords exactly one call: the failed one took nothing
    with pytest.raises(openai.RateLimitError):
        ask(client)


def test_key_and_session_budgets(upstream: UpstreamServer, gateway_factory: GatewayFactory, tmp_path: Path) -> None:
    gateway = gateway_factory(
        budget_yaml(upstream, f"sqlite:///{tmp_path / 'db'}", "{session: [{limit_usd: 0.0005, period: total}]}",
                    key_budgets="[{limit_usd: 0.0015, period: monthly}]")
    )
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=KEY, max_retries=0)
    ask(client, extra_headers={"x-lockgate-session-id": "s1"})
    with pytest.raises(openai.RateLimitError) as refused:
        ask(client, extra_headers={"x-lockgate-session-id": "s1"})
    assert "session 's1' (total)" in refused.value.message and "does not reset" in refused.value.message
    ask(client, extra_headers={"x-lockgate-session-id": "s2"})
    ask(client)
    with pytest.raises(openai.RateLimitError) as refused:
        ask(client)
    assert "key 'team-bot' (monthly)" in refused.value.message


def test_an_unreachable_store_fails_closed_by_default_and_open_when_configured(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    dead = "redis://127.0.0.1:1/0"
    closed = gateway_factory(budget_yaml(upstream, dead, "{global: [{limit_usd: 1}]}"))
    client = openai.OpenAI(base_url=f"{closed.url}/v1", api_key=KEY, max_retries=0)
    with pytest.raises(openai.InternalServerError) as unavailable:
        ask(client)
    assert unavailable.value.status_code == 503
    assert "store is unreachable" in unavailable.value.message and "'closed'" in unavailable.value.message
    assert httpx.get(f"{closed.url}/healthz").status_code == 200  # never crashes

    opened = gateway_factory(budget_yaml(upstream, dead, "{on_store_error: open, global: [{limit_usd: 1}]}"))
    client = openai.OpenAI(base_url=f"{opened.url}/v1", api_key=KEY, max_retries=0)
    assert ask(client)


def budgeted_behind(proxied: tuple[TcpProxy, str], upstream: UpstreamServer, gateway_factory: GatewayFactory) -> openai.OpenAI:
    """A client of a gateway whose store (Redis, with a global budget) is behind the test's proxy."""
    gateway = gateway_factory(budget_yaml(upstream, proxied[1], "{global: [{limit_usd: 1}]}"))
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=KEY, max_retries=0)


def test_the_gateway_recovers_by_itself_when_the_store_returns(
    proxied_redis: tuple[TcpProxy, str], upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    proxy, client = proxied_redis[0], budgeted_behind(proxied_redis, upstream, gateway_factory)
    ask(client)
    proxy.down()
    with pytest.raises(openai.InternalServerError) as unavailable:
        ask(client)
    assert unavailable.value.status_code == 503
    proxy.up()
    ask(client)  # no restart, no operator: the next request simply works


def test_a_store_outage_is_logged_once_not_once_per_refused_request(
    proxied_redis: tuple[TcpProxy, str], upstream: UpstreamServer, gateway_factory: GatewayFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy, client = proxied_redis[0], budgeted_behind(proxied_redis, upstream, gateway_factory)
    proxy.down()
    with caplog.at_level(logging.WARNING, logger="lockgate.budgets"):
        for _ in range(30):
            with pytest.raises(openai.InternalServerError) as unavailable:
                ask(client)
            assert unavailable.value.status_code == 503
    lines = [r.getMessage() for r in caplog.records if "store unreachable" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("store unreachable, budgets enforced closed: Redis store")
