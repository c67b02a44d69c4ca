"""Circuit breakers over time: consecutive failures open, one half-open probe, success closes, 503 at once."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from gateway.routing.breakers import Breakers, BreakerSettings, BreakerTransition
from gateway.testing.upstream import Fault, UpstreamServer
from tests.conftest import GatewayFactory
from tests.routing.conftest import MESSAGES, config, deployment, router_of, sdk, watch_breakers

NO_RETRIES = "num_retries: 0, timeout: 5"


def test_breaker_opens_after_consecutive_failures_answers_503_at_once_then_probes_and_closes(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(config(deployment("gpt", upstream, "solo", "solo"), router=NO_RETRIES))
    transitions = watch_breakers(gateway)
    breakers = router_of(gateway).breakers
    client = sdk(gateway)
    upstream.upstream.model_default["solo"] = Fault.error(500, "down")

    for expected_failures in (1, 2):
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="gpt", messages=MESSAGES)
        assert breakers.state("solo") == "closed" and breakers.failures("solo") == expected_failures
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt", messages=MESSAGES)
    assert breakers.state("solo") == "open"
    assert [(t.old, t.new, t.failures, t.reason) for t in transitions] == [
        ("closed", "open", 3, "server_error")
    ]

    # Open: answered at once with 503, retry-after and what is down; the upstream is left alone.
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="gpt", messages=MESSAGES)
    assert caught.value.status_code == 503
    assert caught.value.response.headers["retry-after"] == "1"
    assert 0 < int(caught.value.response.headers["retry-after-ms"]) <= 250
    assert "solo: circuit breaker open" in caught.value.message
    assert caught.value.response.headers["x-lockgate-attempts"] == "0"
    assert len(upstream.upstream.arrivals("solo")) == 3

    # After the reset timeout (0.25 s) one probe goes through; the upstream has recovered.
    upstream.upstream.model_default.pop("solo")
    time.sleep(0.3)  # let the reset timeout pass: the behaviour under test is time itself
    assert breakers.state("solo") == "half_open"
    reply = client.chat.completions.create(model="gpt", messages=MESSAGES)
    assert reply.choices[0].message.content
    assert breakers.state("solo") == "closed" and breakers.failures("solo") == 0
    assert [(t.old, t.new) for t in transitions] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]


def test_one_request_failing_on_every_retry_counts_once_and_the_next_client_is_served(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(config(deployment("gpt", upstream, "solo", "solo"), router="num_retries: 2, timeout: 5"))
    breakers = router_of(gateway).breakers
    client = sdk(gateway)
    # The upstream chokes on this one request, every time it is sent (three attempts: a threshold's worth).
    upstream.upstream.script_for("solo", *[Fault.error(500, "chokes on this body")] * 3)
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="gpt", messages=MESSAGES)
    assert caught.value.status_code == 502 and caught.value.response.headers["x-lockgate-attempts"] == "3"
    assert breakers.state("solo") == "closed" and breakers.failures("solo") == 1
    reply = client.chat.completions.create(model="gpt", messages=MESSAGES)  # not a 503 for everyone else
    assert reply.choices[0].message.content and breakers.failures("solo") == 0


def test_a_failed_probe_reopens_the_breaker(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(config(deployment("gpt", upstream, "solo", "solo"), router=NO_RETRIES))
    transitions = watch_breakers(gateway)
    client = sdk(gateway)
    upstream.upstream.model_default["solo"] = Fault.error(503, "still down")
    for _ in range(3):
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="gpt", messages=MESSAGES)

    time.sleep(0.3)  # past the reset timeout
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="gpt", messages=MESSAGES)

    assert caught.value.status_code == 502, "the probe reached the upstream and failed"
    assert len(upstream.upstream.arrivals("solo")) == 4
    assert router_of(gateway).breakers.state("solo") == "open"
    assert [(t.old, t.new) for t in transitions] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "open"),
    ]


def test_only_one_probe_goes_through_while_half_open(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(config(deployment("gpt", upstream, "solo", "solo"), router=NO_RETRIES))
    client = sdk(gateway)
    upstream.upstream.model_default["solo"] = Fault.error(500, "down")
    for _ in range(3):
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="gpt", messages=MESSAGES)
    upstream.upstream.model_default["solo"] = Fault(delay=0.5)  # recovered, but the probe takes a while
    time.sleep(0.3)  # past the reset timeout

    def call(_: int) -> int:
        try:
            client.chat.completions.create(model="gpt", messages=MESSAGES)
            return 200
        except openai.APIStatusError as error:
            return error.status_code

    with ThreadPoolExecutor(4) as pool:
        statuses = sorted(pool.map(call, range(4)))

    assert statuses == [200, 503, 503, 503]
    assert len(upstream.upstream.arrivals("solo")) == 4, "3 failures, then exactly one probe"


def test_other_deployments_take_the_traffic_while_a_breaker_is_open(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(
        config(
            deployment("gpt", upstream, "bad", "bad", weight=1000),
            deployment("gpt", upstream, "good", "good", weight=0.001),
            router="num_retries: 0, timeout: 5",
            extra="breakers: {failure_threshold: 2, reset_timeout: 60}\n",
        )
    )
    upstream.upstream.model_default["bad"] = Fault.error(502, "bad gateway")
    client = sdk(gateway)

    served = [
        client.chat.completions.with_raw_response.create(model="gpt", messages=MESSAGES).headers[
            "x-lockgate-attempts"
        ]
        for _ in range(5)
    ]

    assert served == ["2", "2", "1", "1", "1"], "after 2 failures 'bad' is skipped without an attempt"
    assert len(upstream.upstream.arrivals("bad")) == 2
    assert router_of(gateway).breakers.state("bad") == "open"


def test_breakers_can_be_switched_off(upstream: UpstreamServer, gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(
        config(
            deployment("gpt", upstream, "solo", "solo"),
            router=NO_RETRIES,
            extra="breakers: {enabled: false}\n",
        )
    )
    upstream.upstream.model_default["solo"] = Fault.error(500, "down")
    for _ in range(6):
        with pytest.raises(openai.InternalServerError) as caught:
            sdk(gateway).chat.completions.create(model="gpt", messages=MESSAGES)
        assert caught.value.status_code == 502
    assert len(upstream.upstream.arrivals("solo")) == 6


def test_litellm_allowed_fails_and_cooldown_time_set_the_breaker(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(
        config(
            deployment("gpt", upstream, "solo", "solo"),
            router="allowed_fails: 2, cooldown_time: 42",
            extra="",
        )
    )
    settings = router_of(gateway).breakers.settings
    assert (settings.failure_threshold, settings.reset_timeout) == (2, 42)


def test_registry_reports_transitions_outside_any_request() -> None:
    breakers = Breakers(BreakerSettings(failure_threshold=2, reset_timeout=60))
    seen: list[BreakerTransition] = []
    breakers.listeners.append(seen.append)

    assert breakers.failed("a", "timeout") is None
    opened = breakers.failed("a", "timeout")

    assert opened is not None and (opened.deployment_id, opened.old, opened.new) == ("a", "closed", "open")
    assert seen == [opened]
    admission = breakers.admit("a")
    assert not admission.allowed and admission.until > time.time() + 59
    assert breakers.admit("b").allowed, "breakers are per deployment"
