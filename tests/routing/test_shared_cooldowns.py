"""A 429 seen by one replica keeps every replica sharing the store away from that deployment."""

from __future__ import annotations

import openai
import pytest

from gateway.routing.shared_cooldowns import StoreCooldowns
from gateway.store import open_store
from gateway.testing.upstream import Fault, UpstreamServer
from tests.conftest import GatewayFactory
from tests.routing.conftest import MESSAGES, config, deployment, sdk


def test_a_rate_limit_on_one_replica_cools_the_deployment_on_the_other(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, redis_prefix: str
) -> None:
    shared = (
        f"store: 'redis://127.0.0.1:6379/0?prefix={redis_prefix}'\n"
        "routing: {retry_backoff: 0.02, cooldown_refresh: 0}\n"
    )
    yaml = config(
        deployment("gpt", upstream, "shared-up", "shared"), router="num_retries: 1, timeout: 2", extra=shared
    )
    first, second = gateway_factory(yaml), gateway_factory(yaml)
    upstream.upstream.model_default["shared-up"] = Fault.error(429, "Rate limit reached", retry_after=30)

    with pytest.raises(openai.RateLimitError):
        sdk(first).chat.completions.create(model="gpt", messages=MESSAGES)
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(second).chat.completions.create(model="gpt", messages=MESSAGES)

    assert caught.value.status_code == 503
    assert "shared: cooling down after a rate limit" in caught.value.message
    assert len(upstream.upstream.arrivals("shared-up")) == 1, "the second replica never called it"


async def test_mirror_reads_the_store_at_most_once_per_interval(redis_prefix: str) -> None:
    store = open_store(f"redis://127.0.0.1:6379/0?prefix={redis_prefix}")
    now = [1000.0]
    writer = StoreCooldowns(store, refresh=10, clock=lambda: now[0])
    reader = StoreCooldowns(store, refresh=10, clock=lambda: now[0])
    try:
        assert reader.maybe_active(), "never read yet: due"
        assert await reader.active(["a"]) == {}
        assert not reader.maybe_active(), "read, nothing cooling: no store round trip until the next interval"

        await writer.start("a", 30)
        assert writer.maybe_active() and await writer.active(["a"]) == {"a": 1030.0}
        assert await reader.active(["a"]) == {}, "not due yet: the reader's mirror is a little behind"

        now[0] += 10
        assert reader.maybe_active()
        assert await reader.active(["a", "b"]) == {"a": 1030.0}
        now[0] += 30
        assert await reader.active(["a"]) == {}
    finally:
        await store.aclose()
