"""Groups, strategies and fallback chains: who serves a request, and what the router recorded."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import openai
import orjson
import pytest

from gateway.config import parse_config
from gateway.config.runtime import Deployment
from gateway.context import ApiRequest
from gateway.providers import Providers
from gateway.routing.router import Router
from gateway.routing.strategies import weighted_shuffle
from gateway.testing.upstream import Fault, UpstreamServer
from tests.conftest import GatewayFactory
from tests.routing.conftest import MESSAGES, config, deployment, router_of, sdk


def test_three_deployments_one_down_one_rate_limited_serve_every_request(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, refused_url: str
) -> None:
    gateway = gateway_factory(
        config(
            deployment("gpt", refused_url, "down", "down"),
            deployment("gpt", upstream, "limited", "limited"),
            deployment("gpt", upstream, "healthy", "healthy"),
        )
    )
    upstream.upstream.model_default["limited"] = Fault.error(429, "Rate limit reached", retry_after=30)
    client = sdk(gateway)

    served: Counter[str] = Counter()
    for i in range(20):
        raw = client.chat.completions.with_raw_response.create(
            model="gpt", messages=[{"role": "user", "content": f"request {i}"}]
        )
        assert raw.parse().choices[0].message.content, "no client-visible error, ever"
        served[raw.headers["x-lockgate-deployment"]] += 1

    assert served == {"healthy": 20}
    # The rate-limited one was asked once and then left alone for its Retry-After.
    assert len(upstream.upstream.arrivals("limited")) == 1
    assert router_of(gateway).breakers.state("down") in ("closed", "open")


def test_exhausted_group_falls_back_to_the_next_group(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(
        config(
            deployment("primary", upstream, "p", "p"),
            deployment("backup", upstream, "b", "b"),
            router="num_retries: 2, timeout: 5, fallbacks: [{primary: [backup]}]",
        )
    )
    upstream.upstream.model_default["p"] = Fault.error(503, "overloaded")

    raw = sdk(gateway).chat.completions.with_raw_response.create(model="primary", messages=MESSAGES)

    assert raw.headers["x-lockgate-deployment"] == "b"
    assert raw.headers["x-lockgate-attempts"] == "2"
    assert len(upstream.upstream.arrivals("p")) == 1, "fail over first: no waiting on the primary"


def test_everything_down_in_the_whole_chain_is_an_immediate_503_naming_it(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(
        config(
            deployment("primary", upstream, "p", "p"),
            deployment("backup", upstream, "b", "b"),
            router="num_retries: 0, timeout: 5, fallbacks: [{primary: [backup]}]",
            extra="breakers: {failure_threshold: 1, reset_timeout: 60}\n",
        )
    )
    upstream.upstream.model_default["p"] = Fault.error(500, "down")
    upstream.upstream.model_default["b"] = Fault.error(429, "slow down", retry_after=20)
    client = sdk(gateway)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="primary", messages=MESSAGES)

    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="primary", messages=MESSAGES)

    assert caught.value.status_code == 503
    assert "p: circuit breaker open" in caught.value.message
    assert "b: cooling down after a rate limit" in caught.value.message
    assert 15 <= int(caught.value.response.headers["retry-after"]) <= 20, "the soonest reopening"
    assert len(upstream.upstream.received) == 2


def test_prompt_over_the_context_window_goes_straight_to_the_big_model(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(
        config(
            deployment("small", upstream, "small-up", "small", info=", max_input_tokens: 100"),
            deployment("big", upstream, "big-up", "big"),
            router="context_window_fallbacks: [{small: [big]}]",
        )
    )
    client = sdk(gateway)
    long_prompt = [{"role": "user", "content": "word " * 400}]  # ~2000 characters: ~500 tokens

    raw = client.chat.completions.with_raw_response.create(model="small", messages=long_prompt)  # type: ignore[arg-type]
    assert raw.headers["x-lockgate-deployment"] == "big"
    assert upstream.upstream.arrivals("small-up") == [], "the small model was not called"

    short = client.chat.completions.with_raw_response.create(model="small", messages=MESSAGES)
    assert short.headers["x-lockgate-deployment"] == "small"


def test_window_from_litellms_model_map(upstream: UpstreamServer, gateway_factory: GatewayFactory) -> None:
    # gpt-3.5-turbo's window (16385) comes from litellm's bundled map, read without importing litellm.
    gateway = gateway_factory(
        config(
            deployment("small", upstream, "gpt-3.5-turbo", "small"),
            deployment("big", upstream, "big-up", "big"),
            router="context_window_fallbacks: [{small: [big]}]",
            extra="",
        )
    )
    prompt = [{"role": "user", "content": "lorem ipsum " * 7000}]  # 84000 characters: ~21000 tokens

    raw = sdk(gateway).chat.completions.with_raw_response.create(model="small", messages=prompt)  # type: ignore[arg-type]

    assert raw.headers["x-lockgate-deployment"] == "big"
    assert upstream.upstream.arrivals("gpt-3.5-turbo") == []


def test_context_length_error_moves_to_the_context_window_fallback(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(
        config(
            deployment("small", upstream, "small-up", "small"),
            deployment("big", upstream, "big-up", "big"),
            router="context_window_fallbacks: [{small: [big]}]",
        )
    )
    upstream.upstream.model_default["small-up"] = Fault.context_length()

    raw = sdk(gateway).chat.completions.with_raw_response.create(model="small", messages=MESSAGES)

    assert raw.headers["x-lockgate-deployment"] == "big"
    assert len(upstream.upstream.arrivals("small-up")) == 1
    assert router_of(gateway).breakers.failures("small") == 0


def test_content_policy_error_moves_to_the_content_policy_fallback(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(
        config(
            deployment("strict", upstream, "strict-up", "strict"),
            deployment("lenient", upstream, "lenient-up", "lenient"),
            router="content_policy_fallbacks: [{strict: [lenient]}]",
        )
    )
    upstream.upstream.model_default["strict-up"] = Fault.error(
        400,
        "The response was filtered due to the prompt triggering content management policy.",
        code="content_filter",
    )

    raw = sdk(gateway).chat.completions.with_raw_response.create(model="strict", messages=MESSAGES)

    assert raw.headers["x-lockgate-deployment"] == "lenient"
    assert len(upstream.upstream.arrivals("strict-up")) == 1


def test_least_busy_sends_concurrent_requests_to_different_deployments(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(
        config(
            deployment("gpt", upstream, "a", "a"),
            deployment("gpt", upstream, "b", "b"),
            extra="routing: {strategies: {gpt: least-busy}}\n",
        )
    )
    upstream.upstream.model_default["a"] = upstream.upstream.model_default["b"] = Fault(delay=0.3)
    client = sdk(gateway)

    def call(i: int) -> str:
        raw = client.chat.completions.with_raw_response.create(model="gpt", messages=MESSAGES)
        return raw.headers["x-lockgate-deployment"]

    for _ in range(3):
        with ThreadPoolExecutor(2) as pool:
            assert sorted(pool.map(call, range(2))) == ["a", "b"]


def test_latency_based_routing_prefers_the_fast_deployment(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(
        config(
            deployment("gpt", upstream, "slow", "slow"),
            deployment("gpt", upstream, "fast", "fast"),
            router="routing_strategy: latency-based-routing",
        )
    )
    upstream.upstream.model_default["slow"] = Fault(delay=0.1)
    client = sdk(gateway)

    served = [
        client.chat.completions.with_raw_response.create(model="gpt", messages=MESSAGES).headers[
            "x-lockgate-deployment"
        ]
        for _ in range(6)
    ]

    assert sorted(served[:2]) == ["fast", "slow"], "each is measured once first"
    assert served[2:] == ["fast"] * 4


def test_weighted_shuffle_follows_weights() -> None:
    config_ = parse_config(
        "model_list:\n"
        "  - {model_name: m, litellm_params: {model: fake/a, weight: 9}, model_info: {id: heavy}}\n"
        "  - {model_name: m, litellm_params: {model: fake/b, weight: 1}, model_info: {id: light}}\n"
    )
    deployments: tuple[Deployment, ...] = config_.groups["m"].deployments
    rng = random.Random(7)
    firsts = Counter(weighted_shuffle(deployments, rng)[0].id for _ in range(2000))
    assert 0.85 < firsts["heavy"] / 2000 < 0.95


# ---------------------------------------------------------------- what the router records


@pytest.fixture
async def live_router(upstream: UpstreamServer) -> AsyncIterator[Router]:
    config_ = parse_config(
        config(
            deployment("primary", upstream, "p", "p"),
            deployment("backup", upstream, "b", "b"),
            router="num_retries: 1, timeout: 5, fallbacks: [{primary: [backup]}]",
            extra="routing: {retry_backoff: 0.01}\nbreakers: {failure_threshold: 1, reset_timeout: 60}\n",
        )
    )
    providers = Providers.create(config_)
    await providers.start(config_)
    yield Router(config_, providers)
    await providers.aclose()


def api_request(model: str) -> ApiRequest:
    body = {"model": model, "messages": MESSAGES}
    request = ApiRequest("req_test", "chat", {}, body, orjson.dumps(body), model)
    request.deadline = asyncio.get_running_loop().time() + 5
    return request


async def test_attempts_fallbacks_cooldowns_and_breaker_transitions_are_recorded(
    live_router: Router, upstream: UpstreamServer
) -> None:
    upstream.upstream.model_default["p"] = Fault.error(500, "down")
    upstream.upstream.script_for("b", Fault.error(429, "later", retry_after_ms=30))
    request = api_request("primary")

    routed = await live_router.chat(request)

    assert routed.deployment.id == "b"
    assert [(a.deployment.id, a.failure.status if a.failure else None) for a in request.attempts] == [
        ("p", 500),
        ("b", 429),
        ("b", None),
    ]
    names = [d.name for d in request.decisions]
    assert names == ["lockgate.breaker.open", "lockgate.fallback", "lockgate.cooldown", "lockgate.retry"]
    opened, fallback, cooldown, retry = request.decisions
    assert opened.attributes == {
        "deployment": "p",
        "previous": "closed",
        "failures": 1,
        "reason": "server_error",
    }
    assert fallback.attributes == {"from_group": "primary", "to_group": "backup", "reason": "exhausted"}
    assert cooldown.attributes == {"deployment": "b", "seconds": 0.03}
    assert retry.attributes["deployment"] == "b" and retry.attributes["retry_after_s"] == 0.03
    assert float(retry.attributes["wait_s"]) >= 0.03

    # The next request skips the open breaker without an attempt, and says so.
    second = api_request("primary")
    await live_router.chat(second)
    assert [a.deployment.id for a in second.attempts] == ["b"]
    assert second.decisions[0].name == "lockgate.skipped"
    assert second.decisions[0].attributes["reason"] == "circuit breaker open"
