"""The resilience config sections: strict, with errors that name their key path."""

from __future__ import annotations

import pytest

from gateway.config import parse_config
from gateway.config.loader import ConfigError

MODEL = "model_list:\n  - {model_name: gpt, litellm_params: {model: fake/gpt}}\n"


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    return caught.value.problems


def test_breakers_section_is_strict() -> None:
    assert problems(MODEL + "breakers: {failure_treshold: 3}\n") == [
        "breakers.failure_treshold: unknown key; did you mean 'failure_threshold'?"
    ]
    assert problems(MODEL + "breakers: {reset_timeout: 0}\n") == [
        "breakers.reset_timeout: Input should be greater than 0"
    ]


def test_routing_strategies_name_existing_groups_and_known_strategies() -> None:
    assert problems(MODEL + "routing: {strategies: {gtp: least-busy}}\n") == [
        "routing.strategies.gtp: no model_list entry has model_name 'gtp'"
    ]
    assert any(
        p.startswith("routing.strategies.gpt:")
        for p in problems(MODEL + "routing: {strategies: {gpt: fastest}}\n")
    )


def test_breaker_settings_prefer_lockgate_section_over_litellm_keys() -> None:
    config = parse_config(
        MODEL + "router_settings: {allowed_fails: 2, cooldown_time: 9}\nbreakers: {failure_threshold: 7}\n"
    )
    assert (config.router.breaker_threshold, config.router.breaker_reset) == (7, 9)


def test_usage_based_routing_is_accepted_with_a_warning() -> None:
    config = parse_config(MODEL + "router_settings: {routing_strategy: usage-based-routing-v2}\n")
    assert any("usage-based-routing-v2" in w and "simple-shuffle" in w for w in config.warnings)
