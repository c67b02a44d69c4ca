"""Per-key requests and tokens per minute, shared through the store, answered like OpenAI does."""

from __future__ import annotations

import math
import time
from pathlib import Path

import openai
import pytest

from gateway.testing.upstream import UpstreamServer
from tests.conftest import GatewayFactory
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
