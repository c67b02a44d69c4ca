"""The `policies:` and `approvals:` config sections (Lockgate's own: unknown keys are errors).

CEL conditions and regular expressions are compiled here, as the config is validated, so a bad one
is a config error naming its key path (`policies.rules[2].when: ...`). The policy engine compiles
them again into its own objects when the app is built; that costs milliseconds, once.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.config.cel import CelCompileError, CelEnvironment

Phase = Literal["pre_call", "post_call", "tool_call"]
Action = Literal["allow", "deny", "redact", "log", "hold"]
PiiKind = Literal["email", "phone", "card", "iban", "national_id", "secret"]
ALL_PII_KINDS: tuple[PiiKind, ...] = ("email", "phone", "card", "iban", "national_id", "secret")


class Strict(BaseModel):
    """Same as `schema.Strict` (which imports this module): unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_cel(source: str | None) -> str | None:
    if source is not None:
        try:
            CelEnvironment().compile(source)
        except CelCompileError as exc:
            raise ValueError(f"invalid CEL expression: {exc}") from None
    return source


def _check_regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    return pattern


class Scope(Strict):
    """Whom a rule applies to; an empty list means everyone (every key, team, model)."""

    keys: list[str] = []
    teams: list[str] = []
    models: list[str] = []


class PolicyRule(Strict):
    name: str = Field(min_length=1)
    phase: Phase = "pre_call"
    # A CEL condition; no condition means the rule always applies (within its scope).
    when: str | None = None
    action: Action = "deny"
    message: str = ""
    scope: Scope = Scope()

    _when = field_validator("when")(classmethod(lambda cls, v: _check_cel(v)))

    @model_validator(mode="after")
    def _hold_needs_a_response(self) -> PolicyRule:
        if self.action == "hold" and self.phase == "pre_call":
            raise ValueError("'hold' applies to a response: use phase post_call or tool_call")
        return self


class ModelAllowLists(Strict):
    """Model groups each key (by name) or team may call; keys or teams not listed are unrestricted."""

    keys: dict[str, list[str]] = {}
    teams: dict[str, list[str]] = {}


class MaxTokens(Strict):
    limit: int = Field(gt=0)
    # deny: refuse a request that asks for more; clamp: lower its max_tokens to the limit.
    action: Literal["deny", "clamp"] = "deny"
    # Also refuse (or clamp to the limit) requests that set no max_tokens at all.
    require: bool = False


class PiiRule(Strict):
    kinds: list[PiiKind] = list(ALL_PII_KINDS)
    action: Literal["redact", "deny", "log"] = "redact"
    requests: bool = True
    responses: bool = True
    scope: Scope = Scope()


class DenyPattern(Strict):
    name: str = Field(min_length=1)
    pattern: str = Field(min_length=1)
    # Where to look: the request's messages, or the response's text.
    phase: Literal["pre_call", "post_call"] = "pre_call"
    ignore_case: bool = True
    message: str = ""
    scope: Scope = Scope()

    _pattern = field_validator("pattern")(classmethod(lambda cls, v: _check_regex(v)))


class ToolRule(Strict):
    name: str = Field(min_length=1)
    # The tool's name, or a glob (`delete_*`).
    tool: str = Field(min_length=1)
    action: Literal["deny", "hold", "log"] = "deny"
    # Argument name -> regular expression; every listed argument must match (searched, as text).
    args_match: dict[str, str] = {}
    # An extra CEL condition over `tool.args` and the rest.
    when: str | None = None
    message: str = ""
    scope: Scope = Scope()

    _when = field_validator("when")(classmethod(lambda cls, v: _check_cel(v)))

    @field_validator("args_match")
    @classmethod
    def _patterns(cls, value: dict[str, str]) -> dict[str, str]:
        for pattern in value.values():
            _check_regex(pattern)
        return value


class LoopDetection(Strict):
    """Escalation thresholds: repeats of one call (or of a two-call ping-pong) before each step."""

    note_after: int = Field(default=3, ge=2)
    hold_after: int = Field(default=5, ge=2)
    deny_after: int = Field(default=8, ge=2)
    # How many of the conversation's most recent tool calls are examined.
    window: int = Field(default=40, ge=4, le=1000)

    @model_validator(mode="after")
    def _ordered(self) -> LoopDetection:
        if not self.note_after <= self.hold_after <= self.deny_after:
            raise ValueError("thresholds must satisfy note_after <= hold_after <= deny_after")
        return self


class PoliciesSection(Strict):
    rules: list[PolicyRule] = []
    models: ModelAllowLists = ModelAllowLists()
    max_tokens: MaxTokens | None = None
    pii: PiiRule | None = None
    deny_patterns: list[DenyPattern] = []
    tools: list[ToolRule] = []
    loops: LoopDetection | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> PoliciesSection:
        names = [r.name for r in self.rules] + [p.name for p in self.deny_patterns] + [t.name for t in self.tools]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"rule names must be unique; repeated: {', '.join(duplicates)}")
        return self

    @property
    def empty(self) -> bool:
        return self == PoliciesSection()


class Webhook(Strict):
    url: str = Field(pattern=r"^https?://")
    # slack: a Slack-compatible `{"text": ...}` body; json: the approval as a JSON object.
    format: Literal["json", "slack"] = "json"
    timeout: float = Field(default=5.0, gt=0)


class ApprovalsSection(Strict):
    # Seconds a client is kept waiting for a decision before it gets an "awaiting approval" reply.
    hold_window: float = Field(default=30.0, ge=0)
    # Seconds after which an undecided hold is denied.
    expire_after: float = Field(default=3600.0, gt=0)
    # Seconds between SSE keep-alive comments to a waiting streaming client.
    keep_alive: float = Field(default=5.0, gt=0)
    webhooks: list[Webhook] = []


def cross_check(section: PoliciesSection, groups: Collection[str], problems: list[str]) -> None:
    """Model names the policies mention must exist, like everywhere else in the config."""

    def models(names: list[str], path: str) -> None:
        for i, name in enumerate(names):
            if name not in groups:
                problems.append(f"{path}[{i}]: no model_list entry has model_name '{name}'")

    for kind in ("keys", "teams"):
        for owner, names in getattr(section.models, kind).items():
            models(names, f"policies.models.{kind}.{owner}")
    for i, rule in enumerate(section.rules):
        models(rule.scope.models, f"policies.rules[{i}].scope.models")
    for i, tool in enumerate(section.tools):
        models(tool.scope.models, f"policies.tools[{i}].scope.models")
