"""Policy rules through the real gateway with the official `openai` SDK: deny, scope, caps, patterns."""

from __future__ import annotations

import openai
import pytest

from gateway.config import parse_config
from gateway.config.loader import ConfigError
from gateway.testing.upstream import UpstreamServer
from tests.conftest import GatewayFactory
from tests.policies.helpers import INTERN_KEY, OPS_KEY, ask, client, config


def test_cel_rule_denies_with_403_policy_violation_and_no_retry(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(config(upstream, """
rules:
  - name: no-hot-interns
    when: "team == 'interns' && request.temperature > 1.0"
    action: deny
    message: interns keep the temperature at 1 or below
"""))
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client(gateway, INTERN_KEY).chat.completions.create(model="gpt-4o", messages=ask("hi"), temperature=1.5)
    error = caught.value
    assert error.status_code == 403
    assert error.code == "policy_violation"
    assert "no-hot-interns" in error.message and "interns keep the temperature" in error.message
    assert error.response.headers["x-should-retry"] == "false"
    assert upstream.upstream.count("/chat/completions") == 0
    # Same request from another team, or a cooler one from the intern, goes through.
    client(gateway, OPS_KEY).chat.completions.create(model="gpt-4o", messages=ask("hi"), temperature=1.5)
    client(gateway, INTERN_KEY).chat.completions.create(model="gpt-4o", messages=ask("hi"), temperature=0.5)
    assert upstream.upstream.count("/chat/completions") == 2


def test_scope_limits_a_rule_to_its_models(upstream: UpstreamServer, gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(config(upstream, """
rules:
  - {name: no-big-model, action: deny, message: use gpt-4o-mini, scope: {models: [gpt-4o]}}
"""))
    with pytest.raises(openai.PermissionDeniedError, match="no-big-model"):
        client(gateway).chat.completions.create(model="gpt-4o", messages=ask("hi"))
    reply = client(gateway).chat.completions.create(model="gpt-4o-mini", messages=ask("hi"))
    assert reply.choices[0].finish_reason == "stop"


def test_an_allow_rule_stops_later_rules_of_its_phase(upstream: UpstreamServer, gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(config(upstream, """
rules:
  - {name: ops-anything-goes, when: "key.name == 'ops'", action: allow}
  - {name: deny-everyone-else, action: deny, message: only ops today}
"""))
    client(gateway, OPS_KEY).chat.completions.create(model="gpt-4o", messages=ask("hi"))
    with pytest.raises(openai.PermissionDeniedError, match="only ops today"):
        client(gateway, INTERN_KEY).chat.completions.create(model="gpt-4o", messages=ask("hi"))


def test_model_allow_list_per_team(upstream: UpstreamServer, gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(config(upstream, "models: {teams: {interns: [gpt-4o-mini]}}"))
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client(gateway, INTERN_KEY).chat.completions.create(model="gpt-4o", messages=ask("hi"))
    assert "team 'interns' may not use the model 'gpt-4o'" in caught.value.message
    client(gateway, INTERN_KEY).chat.completions.create(model="gpt-4o-mini", messages=ask("hi"))
    client(gateway, OPS_KEY).chat.completions.create(model="gpt-4o", messages=ask("hi"))


def test_max_tokens_cap_denies_or_clamps(upstream: UpstreamServer, gateway_factory: GatewayFactory) -> None:
    denying = gateway_factory(config(upstream, "max_tokens: {limit: 100}"))
    with pytest.raises(openai.PermissionDeniedError, match="asks for 500 tokens; the limit is 100"):
        client(denying).chat.completions.create(model="gpt-4o", messages=ask("hi"), max_tokens=500)

    clamping = gateway_factory(config(upstream, "max_tokens: {limit: 3, action: clamp}"))
    reply = client(clamping).chat.completions.create(model="gpt-4o", messages=ask("hi"), max_tokens=500)
    assert upstream.upstream.received[-1].body["max_tokens"] == 3
    assert reply.choices[0].finish_reason == "length"


def test_deny_pattern_refuses_matching_requests(upstream: UpstreamServer, gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(config(upstream, """
deny_patterns:
  - {name: no-prod-drops, pattern: "drop\\\\s+table", message: no destructive SQL}
"""))
    with pytest.raises(openai.PermissionDeniedError, match="no-prod-drops.*no destructive SQL"):
        client(gateway).chat.completions.create(model="gpt-4o", messages=ask("please DROP  TABLE users"))
    client(gateway).chat.completions.create(model="gpt-4o", messages=ask("please describe table users"))


def test_a_bad_cel_expression_is_a_config_error_naming_its_path(upstream: UpstreamServer) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config(upstream, """
rules:
  - {name: fine, when: "model == 'gpt-4o'"}
  - {name: typo, when: "modle == 'gpt-4o'"}
  - {name: not-a-condition, when: "model + 'x'"}
tools:
  - {name: bad-regex, tool: x, args_match: {path: "("}}
"""))
    problems = "\n".join(caught.value.problems)
    assert "policies.rules[1].when: Value error, invalid CEL expression: at 1:1: undeclared reference to 'modle'" in problems
    assert "policies.rules[2].when:" in problems and "must be a condition" in problems
    assert "policies.tools[0].args_match: Value error, invalid regular expression" in problems
    assert "policies.rules[0]" not in problems


def test_unknown_policy_keys_and_models_are_config_errors(upstream: UpstreamServer) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config(upstream, """
models: {teams: {interns: [gpt-5]}}
rules:
  - {name: r, acton: deny}
"""))
    assert "policies.rules[0].acton: unknown key; did you mean 'action'?" in caught.value.problems
    with pytest.raises(ConfigError) as caught:
        parse_config(config(upstream, "models: {teams: {interns: [gpt-4o-mini, gpt-5]}}"))
    assert caught.value.problems == ["policies.models.teams.interns[1]: no model_list entry has model_name 'gpt-5'"]
