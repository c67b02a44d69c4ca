"""Deployment capacity (`rpm`/`tpm` in `litellm_params`): skipped when full, 429 when all are, shared by replicas.

Windows are fixed minutes: a test whose requests straddle a minute's turn cannot tell what it saw, so
each scenario runs again, on fresh deployment ids, if the minute turned while it ran.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import openai
import pytest

from gateway.config import parse_config
from gateway.config.runtime import Deployment, Timeouts
from gateway.context import ApiRequest
from gateway.providers.base import Usage
from gateway.routing.capacity import Capacity, Full, Ticket, estimate_tokens
from gateway.store import open_store
from gateway.testing.server import GatewayServer
from gateway.testing.upstream import UpstreamServer
from tests.conftest import GatewayFactory
from tests.replicas import gateway_processes
from tests.routing.conftest import MESSAGES, config, deployment, sdk
from tests.telemetry.conftest import SpanSink
from tests.test_cli import free_port

T = TypeVar("T")


def within_one_minute(scenario: Callable[[str], T]) -> T:
    """Run `scenario(suffix)`; once more, on fresh ids, if a minute turned while it ran."""
    for attempt in range(2):
        minute = math.floor(time.time() / 60)
        result = scenario(f"r{attempt}")
        if minute == math.floor(time.time() / 60):
            return result
    return result


def served_by(client: openai.OpenAI, model: str = "gpt", **kw: Any) -> str:
    raw = client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES, **kw)
    raw.parse()
    return raw.headers["x-lockgate-deployment"]


def test_a_deployment_at_its_rpm_is_skipped_for_the_fallback_and_the_skip_is_a_span_event(
    upstream: UpstreamServer,
) -> None:
    def scenario(suffix: str) -> tuple[list[str], SpanSink]:
        yaml = config(
            deployment("gpt", upstream, "small-up", f"small-{suffix}", rpm=2),
            deployment("backup", upstream, "big-up", f"big-{suffix}"),
            router="num_retries: 0, timeout: 5, fallbacks: [{gpt: [backup]}]",
        )
        sink = SpanSink()
        gateway = GatewayServer(parse_config(yaml), span_exporter=sink).start()
        try:
            return [served_by(sdk(gateway)) for _ in range(3)], sink
        finally:
            gateway.stop()

    served, sink = within_one_minute(scenario)
    small, big = served[0], served[2]
    assert small.startswith("small-") and big.startswith("big-")
    assert served == [small, small, big]
    skips = [e for s in sink.servers() for e in s.events if e.name == "lockgate.skipped"]
    assert len(skips) == 1
    skip = dict(skips[0].attributes or {})
    assert skip["deployment"] == small and skip["reason"] == "at capacity (2 requests per minute)"
    assert 0 < float(skip["retry_in_s"]) <= 60  # type: ignore[arg-type]


def test_every_deployment_at_capacity_answers_429_in_openai_shape_with_retry_after(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    def scenario(suffix: str) -> tuple[set[str], openai.RateLimitError, openai.RateLimitError, int]:
        gateway = gateway_factory(config(
            deployment("gpt", upstream, f"a-up-{suffix}", f"a-{suffix}", rpm=1),
            deployment("gpt", upstream, f"b-up-{suffix}", f"b-{suffix}", rpm=1),
        ))
        client = sdk(gateway)
        served = {served_by(client), served_by(client)}
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model="gpt", messages=MESSAGES)
        with pytest.raises(openai.RateLimitError) as refused_stream:  # refused before any event
            client.chat.completions.create(model="gpt", messages=MESSAGES, stream=True)
        calls = sum(len(upstream.upstream.arrivals(f"{d}-up-{suffix}")) for d in "ab")
        return served, refused.value, refused_stream.value, calls

    served, refused, refused_stream, calls = within_one_minute(scenario)
    assert len(served) == 2, "each deployment served its one request"
    assert calls == 2, "nothing went upstream once both were full"
    body = refused.response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == "rate_limit_error" and refused.code == "rate_limit_exceeded"
    assert "at capacity (1 requests per minute)" in refused.message
    assert 1 <= int(refused.response.headers["retry-after"]) <= 60
    assert refused.response.headers["x-should-retry"] == "true"
    assert refused_stream.status_code == 429


def test_tpm_counts_the_tokens_asked_for(upstream: UpstreamServer, gateway_factory: GatewayFactory) -> None:
    def scenario(suffix: str) -> tuple[str, str]:
        gateway = gateway_factory(config(
            deployment("gpt", upstream, "small-up", f"small-{suffix}", tpm=200),
            deployment("backup", upstream, "big-up", f"big-{suffix}"),
            router="num_retries: 0, timeout: 5, fallbacks: [{gpt: [backup]}]",
        ))
        client = sdk(gateway)
        # The prompt is ~25 tokens by size: 500 more asked for cannot fit in 200, 5 more can.
        return served_by(client, max_tokens=500), served_by(client, max_tokens=5)

    big, small = within_one_minute(scenario)
    assert big.startswith("big-") and small.startswith("small-")


# ---------------------------------------------------------------- replicas


@pytest.fixture
def two_replicas(upstream: UpstreamServer, redis_prefix: str, tmp_path: Path) -> Iterator[list[str]]:
    """Two gateway processes on one Redis (a prefix of their own), one deployment with rpm: 3."""
    config_file = tmp_path / "lockgate.yaml"
    config_file.write_text(config(
        deployment("gpt", upstream, "shared-up", "shared", rpm=3),
        extra=f"store: 'redis://127.0.0.1:6379/0?prefix={redis_prefix}'\n",
    ))
    with gateway_processes(config_file, 2) as urls:
        yield urls


def test_two_gateway_processes_on_one_redis_share_a_deployments_rpm(
    two_replicas: list[str], upstream: UpstreamServer
) -> None:
    clients = [openai.OpenAI(base_url=f"{u}/v1", api_key="unused", max_retries=0, timeout=10) for u in two_replicas]
    minute = math.floor(time.time() / 60)
    outcomes = []
    for i in range(4):
        try:
            clients[i % 2].chat.completions.create(model="gpt", messages=MESSAGES)
            outcomes.append("served")
        except openai.RateLimitError as error:
            outcomes.append(error.code or "")
    if minute != math.floor(time.time() / 60):
        pytest.skip("a minute turned during the test: the shared window restarted")  # rare; never a false pass
    assert outcomes == ["served", "served", "served", "rate_limit_exceeded"]
    assert len(upstream.upstream.arrivals("shared-up")) == 3


# ---------------------------------------------------------------- settling tokens, on a real store


def _deployment(rpm: int | None, tpm: int | None) -> Deployment:
    return Deployment(
        id=f"d-{rpm}-{tpm}-{time.time_ns()}", group="g", route="passthrough", provider="openai",
        upstream_model="m", api_base=None, api_key=None, rpm=rpm, tpm=tpm, timeouts=Timeouts(total=5),
    )


def _request(max_tokens: int) -> ApiRequest:
    body = {"model": "g", "messages": MESSAGES, "max_tokens": max_tokens}
    return ApiRequest("req", "chat", {}, body, b"x" * 40, "g")


async def test_tpm_is_settled_with_the_usage_and_rpm_alone_needs_no_settlement(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'capacity.db'}")
    await store.start()

    async def scenario() -> tuple[int, tuple[int, int], list[Ticket | Full | None], tuple[int, int], Any]:
        window = math.floor(time.time() / 60) * 60
        tpm, rpm = _deployment(None, 1000), _deployment(2, None)
        capacity = Capacity(store, [tpm, rpm])
        ticket = await capacity.take(_request(90), tpm)
        assert isinstance(ticket, Ticket)
        ticket.settle(Usage(input_tokens=7, output_tokens=3), served=True)
        huge = await capacity.take(_request(5000), tpm)
        taken = [await capacity.take(_request(1), rpm) for _ in range(4)]
        assert isinstance(taken[0], Ticket)
        taken[0].settle(None, served=True)
        await capacity.drain()
        tokens, requests = await store.counters(
            [f"rl:deployment:{tpm.id}:{window}:tpm", f"rl:deployment:{rpm.id}:{window}:rpm"], time.time()
        )
        return window, (tokens.used, tokens.reserved), taken, (requests.used, requests.reserved), huge

    try:
        for _ in range(2):  # again if a minute turned: the counters read would be the old window's
            window, tokens, taken, requests, huge = await scenario()
            if window == math.floor(time.time() / 60) * 60:
                break
    finally:
        await asyncio.wait_for(store.aclose(), 5)
    assert estimate_tokens(_request(90)) == 10 + 90  # 40 bytes of prompt at 4 a token, plus max_tokens
    assert tokens == (10, 0), "the estimate of 100 was replaced by the 10 tokens used"
    assert [type(t) for t in taken[:2]] == [Ticket, Ticket] and isinstance(taken[2], Full)
    assert (taken[2].kind, taken[2].limit) == ("requests", 2)
    assert taken[3] is taken[2], "full at its rpm until the window turns: remembered, the store not asked again"
    assert isinstance(huge, Full) and huge.too_large
    assert huge.reason == "request larger than its capacity (1000 tokens per minute)"
    # One request is exact as reserved: left for the sweeper, no settlement (no store call) after the attempt.
    assert requests == (0, 2)


def test_an_unreachable_store_does_not_stop_routing_capacity_fails_open(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    port = free_port()  # nothing listens there: the store's connections are refused
    gateway = gateway_factory(config(
        deployment("gpt", upstream, "solo-up", "solo", rpm=1),
        extra=f"store: 'redis://127.0.0.1:{port}/0'\n",
    ))
    client = sdk(gateway)
    assert [served_by(client) for _ in range(3)] == ["solo"] * 3, "served, uncounted, rather than refused"
