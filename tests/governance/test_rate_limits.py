"""Per-key requests and tokens per minute, shared through the store, answered like OpenAI does."""

from __future__ import annotations

import math
import time
from pathlib import Path

import openai
import pytest

from gateway.testing.upstream import UpstreamServer
from tests.conftest import MASTER_KEY, GatewayFactory
from tests.governance.helpers import Admin, governed_yaml

MESSAGES = [{"role": "user", "content": "hi"}]


def _minute() -> int:
    return math.floor(time.time() / 60)


def test_rpm_refuses_with_retry_after_and_ratelimit_headers_across_replicas(
    redis_prefix: str, upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    store = f"redis://127.0.0.1:6379/0?prefix={redis_prefix}"
    first = gateway_factory(governed_yaml(upstream, store))
    second = gateway_factory(governed_yaml(upstream, store))
    admin = Admin(first.url)
    key = admin.create_key(name="tight", rpm=3)["key"]
    clients = [openai.OpenAI(base_url=f"{g.url}/v1", api_key=key, max_retries=0) for g in (first, second)]

    for _attempt in range(2):  # a minute may turn mid-test: then the window restarts, try once more
        minute = _minute()
        served = 0
        refusal: openai.RateLimitError | None = None
        for i in range(4):
            try:
                clients[i % 2].chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
                served += 1
            except openai.RateLimitError as error:
                refusal = error
                break
        if minute == _minute():
            break
    assert refusal is not None and served == 3  # the two replicas share one counter
    assert refusal.code == "rate_limit_exceeded" and "3 requests per minute" in refusal.message
    headers = refusal.response.headers
    assert headers["x-ratelimit-limit-requests"] == "3" and headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"].endswith("s")
    assert 1 <= int(headers["retry-after"]) <= 60 and headers["x-should-retry"] == "true"
    admin.close()


def test_tpm_and_the_configured_default(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gateway = gateway_factory(
        governed_yaml(upstream, f"sqlite:///{tmp_path / 'db'}", "rate_limits: {default: {tpm: 50}}\n")
    )
    admin = Admin(gateway.url)
    key = admin.create_key(name="default-limited")["key"]
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
    # The reservation bounds tokens by request bytes plus max_tokens: this request cannot fit in 50.
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=100)  # type: ignore[arg-type]
    headers = refused.value.response.headers
    assert headers["x-ratelimit-limit-tokens"] == "50" and "tokens per minute" in refused.value.message
    # A key's own limit replaces the default.
    roomy = admin.create_key(name="roomy", tpm=100_000)["key"]
    openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=roomy, max_retries=0).chat.completions.create(
        model="gpt-4o", messages=MESSAGES  # type: ignore[arg-type]
    )
    admin.close()


def test_served_responses_carry_the_keys_ratelimit_headers_json_and_stream(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gateway = gateway_factory(governed_yaml(upstream, f"sqlite:///{tmp_path / 'db'}"))
    admin = Admin(gateway.url)

    def client(**limits: int) -> openai.OpenAI:
        key = admin.create_key(name="headers", **limits)["key"]
        return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)

    for _attempt in range(2):  # a minute may turn mid-test: then the window restarts, try once more
        minute = _minute()
        limited = client(rpm=5, tpm=100_000)
        seen = []
        for _ in range(2):
            raw = limited.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
            assert raw.parse().choices
            seen.append(raw.headers)
        streamed = limited.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=MESSAGES, stream=True  # type: ignore[arg-type]
        )
        assert list(streamed.parse())
        seen.append(streamed.headers)
        if minute == _minute():
            break
    assert [h["x-ratelimit-limit-requests"] for h in seen] == ["5"] * 3
    assert [h["x-ratelimit-remaining-requests"] for h in seen] == ["4", "3", "2"]
    assert [h["x-ratelimit-limit-tokens"] for h in seen] == ["100000"] * 3
    tokens_left = [int(h["x-ratelimit-remaining-tokens"]) for h in seen]
    assert 100_000 > tokens_left[0] > tokens_left[1] > tokens_left[2] > 0
    for headers in seen:
        reset = headers["x-ratelimit-reset-requests"]
        assert reset.endswith("s") and 0 <= float(reset[:-1]) <= 60
        assert headers["x-ratelimit-reset-tokens"].endswith("s")

    # A key without limits, and the master key, get none of them.
    for unlimited in (client(), openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=MASTER_KEY, max_retries=0)):
        plain = unlimited.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
        assert plain.parse().choices and not [h for h in plain.headers if h.startswith("x-ratelimit-")]
    admin.close()
