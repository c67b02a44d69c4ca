"""The policy engine: runs the rules of each phase over a request or a response, records verdicts.

- `before_call` (pre_call): model allow-lists, the max_tokens cap, deny patterns, PII in the
  request, CEL rules, loop detection. It may rewrite the request (redaction, clamping, a loop note).
- `check_response` (post_call): PII in the response, deny patterns, CEL rules over the response.
- `check_tool_calls` (tool_call): tool rules and CEL tool_call rules, per tool call.

A `deny` raises `PolicyViolation` (403, `policy_violation`); a `hold` is returned to the caller,
which holds the response for approval. Every verdict is recorded on the request with
`request.decide("lockgate.policy.verdict", ...)`, which telemetry turns into a span event.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.config.cel import CelEnvironment, ConditionGroup, Needs
from gateway.config.policies import ALL_PII_KINDS, PoliciesSection
from gateway.context import ApiRequest
from gateway.errors import PolicyViolation
from gateway.policies.literals import Haystack
from gateway.policies.loops import Loop, detect, history
from gateway.policies.messages import MessageTexts
from gateway.policies.pii import PiiDetector
from gateway.policies.rules import CelRule, CompiledScope, RuleSet, Verdict
from gateway.providers.base import ToolCall

VERDICT = "lockgate.policy.verdict"


@dataclass(frozen=True, slots=True)
class HeldCall:
    """A tool call a rule wants a human to approve."""

    index: int
    call: ToolCall
    rule: str
    message: str


class PolicyEngine:
    def __init__(self, section: PoliciesSection) -> None:
        self._env = CelEnvironment()
        self._rules = RuleSet.compile(section, self._env)
        self._allow_keys = {k: frozenset(v) for k, v in section.models.keys.items()}
        self._allow_teams = {t: frozenset(v) for t, v in section.models.teams.items()}
        self._max_tokens = section.max_tokens
        self._pii = section.pii
        self._pii_scope = CompiledScope.of(section.pii.scope) if section.pii else None
        # CEL `redact` rules use the PII kinds configured, or all of them.
        self._detector = PiiDetector(section.pii.kinds if section.pii else ALL_PII_KINDS)
        rules = self._rules
        self.inspects_responses = bool(
            (section.pii and section.pii.responses) or rules.cel_post or rules.patterns_post
        )
        self.inspects_tool_calls = bool(rules.tools or rules.cel_tool)
        self._loops = section.loops
        # Whether any rule can hold a response for a human (then requests may re-attach to holds).
        self.may_hold = any(t.action == "hold" for t in section.tools) or any(
            r.action == "hold" for r in section.rules
        )

    # ------------------------------------------------------------------ pre_call

    def before_call(self, request: ApiRequest) -> Loop | None:
        """Refuses (raises) or rewrites the request; returns a loop that must be held for a human."""
        body = request.body
        try:
            return self._before_call(request)
        finally:
            # Rules replace the body (clamp, redact, a loop note); it is encoded once, at the end.
            if request.body is not body:
                request.raw = orjson.dumps(request.body)

    def _before_call(self, request: ApiRequest) -> Loop | None:
        principal, model = request.principal, request.model
        self._check_models(request)
        if self._max_tokens is not None:
            self._check_max_tokens(request)
        rules = self._rules
        texts: MessageTexts | None = None  # read once, for deny patterns and PII, when one applies
        if rules.patterns_pre:
            haystack: Haystack | None = None
            for pattern in rules.patterns_pre:
                if pattern.scope.covers(principal, model):
                    if haystack is None:
                        texts = _texts_of(request)
                        haystack = Haystack(texts.joined() if texts is not None else "")
                    if pattern.found_in(haystack):
                        self._deny(request, pattern.name, pattern.message or "the request matches a denied pattern")
        pii, scope = self._pii, self._pii_scope
        if pii is not None and pii.requests and scope is not None and scope.covers(principal, model):
            self._pii_in_request(request, "pii", pii.action, texts)
        if rules.cel_pre:
            self._run_cel(request, rules.cel_pre, "pre_call", {}, rules.needs_pre, rules.group_pre)
        return self._check_loops(request) if self._loops is not None else None

    def _check_loops(self, request: ApiRequest) -> Loop | None:
        """Escalate a looping agent: a note the model sees, then a hold for a human, then a denial."""
        thresholds = self._loops
        assert thresholds is not None
        messages = request.body.get("messages")
        loop = detect(history(messages, thresholds.window))
        if loop is None or loop.length < thresholds.note_after:
            return None
        if loop.length >= thresholds.deny_after:
            step = "deny"
        elif loop.length >= thresholds.hold_after:
            step = "hold"
        else:
            step = "note"
        request.decide(
            "lockgate.policy.loop", kind=loop.kind, length=loop.length, tools=",".join(loop.tools), step=step
        )
        if step == "deny":
            self._deny(request, "loops", f"the agent is looping: {loop.describe()}; a human should look at it")
        self._record(request, Verdict("loops", step, "pre_call", loop.describe()))
        if step == "hold":
            return loop
        note = {
            "role": "system",
            "content": (
                f"Note from the Lockgate gateway: {loop.describe()}. Repeating it will not change the outcome: "
                "try something different, or stop and tell the user what is blocking you."
            ),
        }
        assert isinstance(messages, list)
        self._replace_body(request, {**request.body, "messages": [*messages, note]})
        return None

    def _check_models(self, request: ApiRequest) -> None:
        principal = request.principal
        if principal is None:
            return
        allowed = self._allow_keys.get(principal.name)
        rule = "models.keys"
        if allowed is None and principal.team is not None:
            allowed, rule = self._allow_teams.get(principal.team), "models.teams"
        if allowed is not None and request.model not in allowed:
            who = f"key '{principal.name}'" if rule == "models.keys" else f"team '{principal.team}'"
            self._deny(
                request, rule, f"the {who} may not use the model '{request.model}' (allowed: {', '.join(sorted(allowed))})"
            )

    def _check_max_tokens(self, request: ApiRequest) -> None:
        cap = self._max_tokens
        assert cap is not None
        body = request.body
        field = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
        asked = body.get(field)
        too_many = isinstance(asked, int) and asked > cap.limit
        missing = asked is None and cap.require
        if not (too_many or missing):
            return
        if cap.action == "deny":
            what = f"asks for {asked} tokens" if too_many else "sets no max_tokens"
            self._deny(request, "max_tokens", f"the request {what}; the limit is {cap.limit}")
        self._replace_body(request, {**body, field: cap.limit})
        self._record(request, Verdict("max_tokens", "clamp", "pre_call", f"{field} set to {cap.limit}"))

    def _pii_in_request(self, request: ApiRequest, rule: str, action: str, texts: MessageTexts | None = None) -> None:
        messages = request.body.get("messages")
        if not isinstance(messages, list):
            return
        if texts is None or texts.messages is not messages:  # a CEL `redact` rule, after another rewrite
            texts = MessageTexts(messages)
        scans = self._detector.scan_each(texts.texts)
        found = {i: scan for i, scan in enumerate(scans) if scan.matches}
        if not found:
            return  # nothing to redact: the body is not rewritten nor re-encoded
        kinds = sorted({m.kind for scan in found.values() for m in scan.matches})
        if action != "redact":
            if action == "deny":
                self._deny(request, rule, f"the request contains personal data or secrets ({', '.join(kinds)})")
            self._record(request, Verdict(rule, action, "pre_call", ", ".join(kinds)))
            return
        rewritten = texts.replaced({i: scan.redacted for i, scan in found.items()})
        self._replace_body(request, {**request.body, "messages": rewritten})
        self._record(request, Verdict(rule, "redact", "pre_call", ", ".join(kinds)))

    # ------------------------------------------------------------------ post_call

    def response_detector(self, request: ApiRequest) -> tuple[PiiDetector, str] | None:
        """The PII detector and action for this request's response, if any applies."""
        pii, scope = self._pii, self._pii_scope
        if pii is None or not pii.responses or scope is None or not scope.covers(request.principal, request.model):
            return None
        return self._detector, pii.action

    def check_response(
        self, request: ApiRequest, text: str, finish_reason: str, tool_names: list[str]
    ) -> bool:
        """Deny patterns and CEL rules over a whole response's text. True: a rule asks to redact it."""
        haystack = Haystack(text) if self._rules.patterns_post else None
        for pattern in self._rules.patterns_post:
            assert haystack is not None
            if pattern.scope.covers(request.principal, request.model) and pattern.found_in(haystack):
                self._deny(request, pattern.name, pattern.message or "the response matches a denied pattern", "post_call")
        if not self._rules.cel_post:
            return False
        facts = {"response": {"content": text, "finish_reason": finish_reason, "tool_names": tool_names}}
        rules = self._rules
        return self._run_cel(request, rules.cel_post, "post_call", facts, rules.needs_post, rules.group_post)

    def redact_text(self, text: str) -> tuple[str, list[str]]:
        return self._detector.redact(text)

    # ------------------------------------------------------------------ tool_call

    def check_tool_calls(self, request: ApiRequest, calls: Iterable[ToolCall]) -> list[HeldCall]:
        """Deny raises; holds are returned; logs are recorded."""
        held: list[HeldCall] = []
        principal, model = request.principal, request.model
        needs, group = self._rules.needs_tool, self._rules.group_tool
        for index, call in enumerate(calls):
            args = _parse_args(call.arguments)
            bindings = _Bindings(request, "tool_call", _tool_facts(call, args), needs, group)
            for rule in self._rules.tools:
                if not rule.scope.covers(principal, model) or not rule.matches_call(call.name, args):
                    continue
                if rule.slot >= 0 and not self._holds(request, rule.name, rule.slot, bindings):
                    continue
                message = rule.message or f"the tool '{call.name}' is not allowed here"
                if rule.action == "deny":
                    self._deny(request, rule.name, message, "tool_call")
                self._record(request, Verdict(rule.name, rule.action, "tool_call", call.name))
                if rule.action == "hold":
                    held.append(HeldCall(index, call, rule.name, rule.message or f"'{call.name}' needs approval"))
                    break
            for cel_rule in self._rules.cel_tool:
                if not cel_rule.scope.covers(principal, model):
                    continue
                if cel_rule.slot >= 0 and not self._holds(request, cel_rule.name, cel_rule.slot, bindings):
                    continue
                if cel_rule.action == "allow":
                    self._record(request, Verdict(cel_rule.name, "allow", "tool_call", call.name))
                    break
                if cel_rule.action == "deny":
                    self._deny(request, cel_rule.name, cel_rule.message, "tool_call")
                self._record(request, Verdict(cel_rule.name, cel_rule.action, "tool_call", call.name))
                if cel_rule.action == "hold" and not any(h.index == index for h in held):
                    held.append(HeldCall(index, call, cel_rule.name, cel_rule.message or f"'{call.name}' needs approval"))
        return held

    # ------------------------------------------------------------------ shared

    def _run_cel(
        self, request: ApiRequest, rules: Iterable[CelRule], phase: str, facts: dict[str, Any], needs: Needs,
        group: ConditionGroup,
    ) -> bool:
        """Run CEL rules in order; True when one asked to redact (post_call). `allow` stops the phase."""
        bindings = _Bindings(request, phase, facts, needs, group)
        redact = False
        for rule in rules:
            if not rule.scope.covers(request.principal, request.model):
                continue
            if rule.slot >= 0 and not self._holds(request, rule.name, rule.slot, bindings):
                continue
            action = rule.action
            if action == "deny":
                self._deny(request, rule.name, rule.message, phase)
            if action == "redact" and phase == "pre_call":
                self._pii_in_request(request, rule.name, "redact")
                continue
            self._record(request, Verdict(rule.name, action, phase, rule.message))
            if action == "allow":
                break
            redact = redact or action == "redact"
        return redact

    def _holds(self, request: ApiRequest, rule: str, slot: int, bindings: _Bindings) -> bool:
        # Always the CEL library: one evaluator, so a rule means exactly what CEL says it means.
        result = bindings.results()[slot]
        if result is None:
            # A condition over a field the request lacks: the rule does not apply; say so on the trace.
            request.decide("lockgate.policy.error", rule=rule, reason="the condition could not be evaluated")
            return False
        return result

    @staticmethod
    def _bind(request: ApiRequest, phase: str, extra: dict[str, Any], needs: Needs) -> dict[str, Any]:
        """The values of one phase: only the variables (and request fields) its conditions read."""
        wanted = needs.variables
        principal = request.principal
        team = (principal.team if principal else None) or ""
        data: dict[str, Any] = {}
        for name in wanted:
            if name == "request":
                fields, body = needs.request_fields, request.body
                data[name] = body if fields is None else {f: needs.stand_in(f, body[f]) for f in fields if f in body}
            elif name == "model":
                data[name] = request.model
            elif name == "key":
                data[name] = {"name": principal.name if principal else "", "team": team,
                              "user": (principal.user if principal else None) or ""}
            elif name == "team":
                data[name] = team
            elif name == "user":
                data[name] = request.user or (principal.user if principal else None) or ""
            elif name == "session":
                data[name] = {"id": request.session_id or ""}
            elif name == "phase":
                data[name] = phase
            else:  # tool, response: this phase's facts, empty in the others
                data[name] = extra.get(name, {})
        return data

    @staticmethod
    def _replace_body(request: ApiRequest, body: dict[str, Any]) -> None:
        request.body = body  # `before_call` encodes `request.raw` again once it is done

    @staticmethod
    def _record(request: ApiRequest, verdict: Verdict) -> None:
        request.decide(VERDICT, rule=verdict.rule, action=verdict.action, phase=verdict.phase, detail=verdict.message)

    def _deny(self, request: ApiRequest, rule: str, message: str, phase: str = "pre_call") -> None:
        self._record(request, Verdict(rule, "deny", phase, message))
        raise PolicyViolation(rule, message, phase=phase)


class _Bindings:
    """One phase's values and its conditions' results, computed on first use (a phase whose rules are
    all out of scope for the request computes neither). Every condition of the phase is evaluated
    then, with one call: a rule reached later reads the result it would have had, as the values are
    the same and CEL has no side effects."""

    __slots__ = ("_data", "_extra", "_group", "_needs", "_phase", "_request", "_results")

    def __init__(
        self, request: ApiRequest, phase: str, extra: dict[str, Any], needs: Needs, group: ConditionGroup
    ):
        self._request, self._phase, self._extra, self._needs = request, phase, extra, needs
        self._group = group
        self._data: dict[str, Any] | None = None
        self._results: list[bool | None] | None = None

    def results(self) -> list[bool | None]:
        if self._results is None:
            self._results = self._group.results(self.data())
        return self._results

    def data(self) -> dict[str, Any]:
        if self._data is None:
            self._data = PolicyEngine._bind(self._request, self._phase, self._extra, self._needs)
        return self._data


def _texts_of(request: ApiRequest) -> MessageTexts | None:
    messages = request.body.get("messages")
    return MessageTexts(messages) if isinstance(messages, list) else None


def _parse_args(arguments: str) -> dict[str, Any]:
    try:
        parsed = orjson.loads(arguments) if arguments else {}
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _tool_facts(call: ToolCall, args: dict[str, Any]) -> dict[str, Any]:
    return {"tool": {"name": call.name, "args": args, "id": call.id}}
