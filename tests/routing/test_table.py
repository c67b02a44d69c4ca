"""The classification table and the cooldown store, on their own: each row as the router reads it."""

from __future__ import annotations

import random

import pytest

from gateway.config import parse_config
from gateway.errors import UpstreamFailure
from gateway.routing.backoff import Backoff
from gateway.routing.classify import classify
from gateway.routing.cooldowns import InMemoryCooldowns
from gateway.routing.windows import ContextWindows, load_litellm_map


@pytest.mark.parametrize(
    ("failure", "reason", "client_fault", "retry_same", "breaker", "cooldown"),
    [
        (UpstreamFailure("status", "bad", status=400), "client_error", True, False, False, False),
        (UpstreamFailure("status", "nope", status=404), "client_error", True, False, False, False),
        (UpstreamFailure("status", "big", status=413), "client_error", True, False, False, False),
        (UpstreamFailure("status", "bad", status=422), "client_error", True, False, False, False),
        (
            UpstreamFailure("status", "too long", status=400, code="context_length_exceeded"),
            "context_window_exceeded",
            True,
            False,
            False,
            False,
        ),
        (
            UpstreamFailure("status", "filtered", status=400, code="content_filter"),
            "content_policy",
            True,
            False,
            False,
            False,
        ),
        (UpstreamFailure("status", "key", status=401), "upstream_credentials", False, False, True, False),
        (UpstreamFailure("status", "key", status=403), "upstream_credentials", False, False, True, False),
        (
            UpstreamFailure("status", "slow", status=429, retry_after=2),
            "rate_limited",
            False,
            True,
            False,
            True,
        ),
        (UpstreamFailure("status", "boom", status=500), "server_error", False, True, True, False),
        (UpstreamFailure("status", "boom", status=502), "server_error", False, True, True, False),
        (UpstreamFailure("status", "boom", status=503), "server_error", False, True, True, False),
        (UpstreamFailure("status", "odd", status=409), "upstream_rejected", False, False, True, False),
        (UpstreamFailure("connect", "refused"), "connect_error", False, True, True, False),
        (UpstreamFailure("timeout", "slow"), "timeout", False, True, True, False),
        (UpstreamFailure("bad_response", "garbage"), "bad_response", False, True, True, False),
        (UpstreamFailure("stream_cut", "cut"), "stream_cut", False, True, True, False),
    ],
)
def test_classification(
    failure: UpstreamFailure, reason: str, client_fault: bool, retry_same: bool, breaker: bool, cooldown: bool
) -> None:
    verdict = classify(failure)
    assert (verdict.reason, verdict.client_fault, verdict.retry_same, verdict.breaker, verdict.cooldown) == (
        reason,
        client_fault,
        retry_same,
        breaker,
        cooldown,
    )


def test_backoff_grows_with_jitter_and_never_undercuts_retry_after() -> None:
    backoff, rng = Backoff(base=0.1, cap=0.4), random.Random(1)
    waits = [backoff.wait(n, None, rng) for n in (1, 2, 3, 4, 5)]
    assert 0.05 <= waits[0] <= 0.1 and 0.1 <= waits[1] <= 0.2 and 0.2 <= waits[2] <= 0.4
    assert all(0.2 <= w <= 0.4 for w in waits[3:]), "capped"
    assert backoff.wait(1, 3.0, rng) == 3.0


async def test_cooldowns_expire_and_are_only_looked_up_while_one_may_be_active() -> None:
    now = [1000.0]
    cooldowns = InMemoryCooldowns(clock=lambda: now[0])
    assert not cooldowns.maybe_active()

    await cooldowns.start("a", 5)
    await cooldowns.start("a", 1)  # a shorter one never shortens it
    assert cooldowns.maybe_active()
    assert await cooldowns.active(["a", "b"]) == {"a": 1005.0}

    now[0] = 1005.5
    assert await cooldowns.active(["a", "b"]) == {}
    assert not cooldowns.maybe_active()


def test_litellm_map_is_read_only_when_a_window_is_missing_and_only_once() -> None:
    config = parse_config(
        "model_list:\n"
        "  - {model_name: a, litellm_params: {model: openai/gpt-4o, api_base: 'http://x'}}\n"
        "  - {model_name: b, litellm_params: {model: openai/gpt-3.5-turbo, api_base: 'http://x'}}\n"
        "  - {model_name: c, litellm_params: {model: openai/mine, api_base: 'http://x'},"
        " model_info: {max_input_tokens: 99}}\n"
    )
    loads: list[int] = []

    def counting_load() -> dict[str, object]:
        loads.append(1)
        return load_litellm_map()

    given = ContextWindows(config.groups["c"].deployments, load_map=counting_load)
    assert given.get("c#2") == 99 and loads == [], "model_info gives it: the map is not read"

    both = [*config.groups["a"].deployments, *config.groups["b"].deployments]
    windows = ContextWindows(both, load_map=counting_load)
    assert windows.get("a#0") == 128000 and windows.get("b#1") == 16385
    assert loads == [1]
