"""Each upstream fault, as the `openai` SDK sees it through the gateway, and as the upstreams saw it.

For every fault: what the client gets, how many attempts each upstream received and when (backoff
and Retry-After respected, non-retryable errors never retried), and the breaker's state.
"""

from __future__ import annotations

import re
import time

import openai
import pytest

from gateway.routing.outcome import Down, describe, remaining
from gateway.testing.upstream import Fault, UpstreamServer
from tests.conftest import GatewayFactory
from tests.routing.conftest import MESSAGES, config, deployment, router_of, sdk


def test_429_with_retry_after_is_waited_out_then_retried(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(config(deployment("gpt", upstream, "solo", "solo")))
    upstream.upstream.script_for("solo", Fault.error(429, "Rate limit reached", retry_after=0.3))

    raw = sdk(gateway).chat.completions.with_raw_response.create(model="gpt", messages=MESSAGES)

    assert raw.parse().choices[0].message.content
    assert raw.headers["x-lockgate-deployment"] == "solo"
    assert raw.headers["x-lockgate-attempts"] == "2"
    first, second = upstream.upstream.arrivals("solo")
    assert second - first >= 0.3, "the retry came before the upstream's Retry-After"


def test_retry_after_ms_is_honoured(upstream: UpstreamServer, gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(config(deployment("gpt", upstream, "solo", "solo")))
    upstream.upstream.script_for("solo", Fault.error(429, "slow down", retry_after_ms=150))

    sdk(gateway).chat.completions.create(model="gpt", messages=MESSAGES)

    first, second = upstream.upstream.arrivals("solo")
    assert second - first >= 0.15


def test_429_longer_than_the_deadline_is_returned_at_once_then_cooling_down_is_503(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(
        config(deployment("gpt", upstream, "solo", "solo"), router="num_retries: 2, timeout: 2")
    )
    upstream.upstream.script_for("solo", Fault.error(429, "Rate limit reached", retry_after=30))
    client = sdk(gateway)

    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt", messages=MESSAGES)
    assert caught.value.response.headers["retry-after"] == "30"
    assert "The only attempt for 'gpt' failed [solo (rate_limited)]" in caught.value.message
    assert upstream.upstream.arrivals("solo") and len(upstream.upstream.arrivals("solo")) == 1

    # The deployment is cooling down: the next request is not sent to it at all.
    with pytest.raises(openai.InternalServerError) as unavailable:
        client.chat.completions.create(model="gpt", messages=MESSAGES)
    assert unavailable.value.status_code == 503
    assert 25 <= int(unavailable.value.response.headers["retry-after"]) <= 30
    assert "solo: cooling down after a rate limit" in unavailable.value.message
    assert len(upstream.upstream.arrivals("solo")) == 1
    assert router_of(gateway).breakers.state("solo") == "closed", "a 429 is not a breaker failure"


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_retried_with_backoff(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, status: int
) -> None:
    gateway = gateway_factory(config(deployment("gpt", upstream, "solo", "solo")))
    upstream.upstream.script_for("solo", Fault.error(status, "boom"), Fault.error(status, "boom again"))

    raw = sdk(gateway).chat.completions.with_raw_response.create(model="gpt", messages=MESSAGES)

    assert raw.parse().choices[0].message.content
    assert raw.headers["x-lockgate-attempts"] == "3"
    a, b, c = upstream.upstream.arrivals("solo")
    # retry_backoff 0.02 doubling, with at most half shaved off by jitter: >= 0.01, then >= 0.02.
    assert b - a >= 0.01 and c - b >= 0.02


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_that_persists_is_a_5xx_after_num_retries(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, status: int
) -> None:
    gateway = gateway_factory(
        config(deployment("gpt", upstream, "solo", "solo"), extra="routing: {retry_backoff: 0.01}\n")
    )
    upstream.upstream.model_default["solo"] = Fault.error(status, "still broken")

    with pytest.raises(openai.InternalServerError) as caught:
        sdk(gateway).chat.completions.create(model="gpt", messages=MESSAGES)

    assert caught.value.status_code == 502
    assert caught.value.response.headers["x-lockgate-attempts"] == "3"
    assert "All 3 attempts for 'gpt' failed" in caught.value.message
    assert f"HTTP {status}" in caught.value.message
    assert len(upstream.upstream.arrivals("solo")) == 3, "1 attempt + num_retries (2), no more"


@pytest.mark.parametrize("status", [400, 404, 413, 422])
def test_client_errors_are_never_retried_nor_counted(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, status: int
) -> None:
    gateway = gateway_factory(
        config(deployment("gpt", upstream, "one", "one"), deployment("gpt", upstream, "two", "two"))
    )
    for model in ("one", "two"):
        upstream.upstream.model_default[model] = Fault.error(status, "Invalid value for 'temperature'.")
    client = sdk(gateway)

    for _ in range(4):  # more than the breaker threshold (3)
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="gpt", messages=MESSAGES)
        assert caught.value.status_code == status
        assert caught.value.response.headers["x-should-retry"] == "false"
        assert caught.value.response.headers["x-lockgate-attempts"] == "1"

    assert len(upstream.upstream.received) == 4, "one attempt per request, never another deployment"
    breakers = router_of(gateway).breakers
    assert breakers.state("one") == breakers.state("two") == "closed"
    assert breakers.failures("one") == breakers.failures("two") == 0


def test_context_length_error_is_the_clients_without_a_fallback(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(
        config(deployment("gpt", upstream, "one", "one"), deployment("gpt", upstream, "two", "two"))
    )
    for model in ("one", "two"):
        upstream.upstream.model_default[model] = Fault.context_length()

    with pytest.raises(openai.BadRequestError) as caught:
        sdk(gateway).chat.completions.create(model="gpt", messages=MESSAGES)

    assert caught.value.code == "context_length_exceeded"
    assert "maximum context length" in caught.value.message
    assert len(upstream.upstream.received) == 1
    assert router_of(gateway).breakers.failures("one") + router_of(gateway).breakers.failures("two") == 0


def test_upstream_401_is_the_gateways_problem_and_another_deployment_serves(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(
        config(
            deployment("gpt", upstream, "badkey", "badkey", weight=1000),
            deployment("gpt", upstream, "goodkey", "goodkey", weight=0.001),
        )
    )
    upstream.upstream.model_default["badkey"] = Fault.error(401, "Incorrect API key provided")

    raw = sdk(gateway).chat.completions.with_raw_response.create(model="gpt", messages=MESSAGES)

    assert raw.headers["x-lockgate-deployment"] == "goodkey"
    assert len(upstream.upstream.arrivals("badkey")) == 1, "a credential error is not retried on the same key"
    assert router_of(gateway).breakers.failures("badkey") == 1


def test_connection_refused_moves_to_the_next_deployment(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, refused_url: str
) -> None:
    gateway = gateway_factory(
        config(
            deployment("gpt", refused_url, "dead", "dead", weight=1000),
            deployment("gpt", upstream, "alive", "alive", weight=0.001),
        )
    )

    raw = sdk(gateway).chat.completions.with_raw_response.create(model="gpt", messages=MESSAGES)

    assert raw.headers["x-lockgate-deployment"] == "alive"
    assert raw.headers["x-lockgate-attempts"] == "2"
    assert router_of(gateway).breakers.failures("dead") == 1


def test_connection_refused_everywhere_is_a_502_naming_the_cause(
    gateway_factory: GatewayFactory, refused_url: str
) -> None:
    gateway = gateway_factory(config(deployment("gpt", refused_url, "dead", "dead")))

    with pytest.raises(openai.InternalServerError) as caught:
        sdk(gateway).chat.completions.create(model="gpt", messages=MESSAGES)

    assert caught.value.status_code == 502
    assert "upstream dead is unreachable" in caught.value.message
    assert caught.value.response.headers["x-lockgate-attempts"] == "3"
    assert caught.value.response.headers["retry-after"]


def test_slow_answer_times_out_and_the_next_deployment_serves(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(
        config(
            deployment("gpt", upstream, "slow", "slow", weight=1000, timeout=0.2),
            deployment("gpt", upstream, "quick", "quick", weight=0.001),
        )
    )
    upstream.upstream.model_default["slow"] = Fault(delay=2.0)

    raw = sdk(gateway).chat.completions.with_raw_response.create(model="gpt", messages=MESSAGES)

    assert raw.headers["x-lockgate-deployment"] == "quick"
    assert len(upstream.upstream.arrivals("slow")) == 1
    assert router_of(gateway).breakers.failures("slow") == 1


def test_malformed_json_body_is_a_failure_and_is_retried(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(config(deployment("gpt", upstream, "solo", "solo")))
    upstream.upstream.script_for("solo", Fault(body=b"<html>oops</html>"))

    raw = sdk(gateway).chat.completions.with_raw_response.create(model="gpt", messages=MESSAGES)

    assert raw.parse().choices[0].message.content
    assert raw.headers["x-lockgate-attempts"] == "2"


def test_client_can_shorten_the_request_timeout(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(config(deployment("gpt", upstream, "solo", "solo")))
    upstream.upstream.model_default["solo"] = Fault(delay=3.0)

    with pytest.raises(openai.APIStatusError) as caught:
        sdk(gateway).chat.completions.create(
            model="gpt", messages=MESSAGES, extra_headers={"x-lockgate-timeout": "0.2"}
        )

    assert caught.value.status_code == 504
    assert "timed out" in caught.value.message
    assert len(upstream.upstream.arrivals("solo")) == 1, "no retry once the deadline has passed"

    with pytest.raises(openai.BadRequestError) as bad:
        sdk(gateway).chat.completions.create(
            model="gpt", messages=MESSAGES, extra_headers={"x-lockgate-timeout": "soon"}
        )
    assert bad.value.param == "x-lockgate-timeout"


def test_embeddings_fail_over_like_chat(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, refused_url: str
) -> None:
    gateway = gateway_factory(
        config(
            deployment("embed", refused_url, "dead-embed", "dead", weight=1000),
            deployment("embed", upstream, "live-embed", "live", weight=0.001),
        )
    )

    raw = sdk(gateway).embeddings.with_raw_response.create(model="embed", input="hello")

    assert raw.headers["x-lockgate-deployment"] == "live"
    assert raw.headers["x-lockgate-attempts"] == "2"
    assert raw.parse().data[0].embedding


def test_a_cooldown_shorter_than_a_second_reads_in_milliseconds_never_as_zero() -> None:
    # A provider's Retry-After of 50 ms used to read "cooling down ... for 0.0s" in the 503's message.
    now = time.time()
    text = describe({"a": Down("cooling down after a rate limit", now + 0.05), "b": Down("circuit breaker open", now + 12.3)})
    assert re.fullmatch(r"a: cooling down after a rate limit, for [1-5]\d ms; b: circuit breaker open, for 12\.[23]s", text)
    assert remaining(0.0004) == "under 1 ms"
