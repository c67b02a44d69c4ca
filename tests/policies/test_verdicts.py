"""Every verdict is recorded on the request as a `lockgate.policy.verdict` decision (telemetry's input)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.config.policies import PoliciesSection
from gateway.config.runtime import Principal
from gateway.context import ApiRequest
from gateway.errors import PolicyViolation
from gateway.policies.engine import PolicyEngine


def request(body: dict[str, Any], principal: Principal | None = None) -> ApiRequest:
    return ApiRequest("req_1", "chat", {}, body, orjson.dumps(body), body["model"], principal=principal)


def verdicts(req: ApiRequest) -> list[dict[str, Any]]:
    return [d.attributes for d in req.decisions if d.name == "lockgate.policy.verdict"]


def test_log_redact_and_deny_are_each_recorded_with_rule_action_and_phase() -> None:
    engine = PolicyEngine(PoliciesSection.model_validate({
        "rules": [
            {"name": "watch-interns", "when": "team == 'interns'", "action": "log", "message": "intern call"},
            {"name": "scrub", "when": "model == 'm'", "action": "redact"},
            {"name": "no-long", "when": "size(request.messages) > 2", "action": "deny", "message": "too long"},
        ]
    }))
    req = request({"model": "m", "messages": [{"role": "user", "content": "to a@b.co"}]}, Principal("k", team="interns"))
    engine.before_call(req)
    assert verdicts(req) == [
        {"rule": "watch-interns", "action": "log", "phase": "pre_call", "detail": "intern call"},
        {"rule": "scrub", "action": "redact", "phase": "pre_call", "detail": "email"},
    ]
    assert orjson.loads(req.raw)["messages"][0]["content"] == "to [REDACTED:email]"

    long = request({"model": "m", "messages": [{"role": "user", "content": "x"}] * 3})
    with pytest.raises(PolicyViolation):
        engine.before_call(long)
    assert verdicts(long)[-1] == {"rule": "no-long", "action": "deny", "phase": "pre_call", "detail": "too long"}


def test_a_condition_over_a_missing_field_does_not_match_and_is_noted() -> None:
    engine = PolicyEngine(PoliciesSection.model_validate(
        {"rules": [{"name": "hot", "when": "request.temperature > 1.0", "action": "deny"}]}
    ))
    req = request({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    engine.before_call(req)
    assert [(d.name, d.attributes["rule"]) for d in req.decisions] == [("lockgate.policy.error", "hot")]
