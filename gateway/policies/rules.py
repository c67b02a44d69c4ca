"""The policy rules in their compiled, hot-path form, built once from the `policies:` section.

A rule is a scope (who it applies to), a condition (a CEL expression, a pattern, or a built-in
check) and an action. The engine (`engine.py`) decides in which order they run and what their
verdicts do; this module only says whether a rule applies and matches.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.config.cel import CelEnvironment, Condition, ConditionGroup, Needs
from gateway.config.policies import DenyPattern, PoliciesSection, Scope, ToolRule
from gateway.config.runtime import Principal
from gateway.policies.literals import Haystack, LiteralFilter


@dataclass(frozen=True, slots=True)
class CompiledScope:
    keys: frozenset[str]
    teams: frozenset[str]
    models: frozenset[str]

    @classmethod
    def of(cls, scope: Scope) -> CompiledScope:
        return cls(frozenset(scope.keys), frozenset(scope.teams), frozenset(scope.models))

    def covers(self, principal: Principal | None, model: str) -> bool:
        if self.models and model not in self.models:
            return False
        if self.keys and (principal is None or principal.name not in self.keys):
            return False
        if self.teams and (principal is None or principal.team not in self.teams):
            return False
        return True


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one rule decided; recorded on the request as a `lockgate.policy.verdict` decision."""

    rule: str
    action: str
    phase: str
    message: str = ""


@dataclass(frozen=True, slots=True)
class CelRule:
    name: str
    phase: str
    action: str
    message: str
    scope: CompiledScope
    condition: Condition | None
    # The condition's place in its phase's `ConditionGroup` (-1: no condition).
    slot: int = -1


@dataclass(frozen=True, slots=True)
class PatternRule:
    name: str
    phase: str
    message: str
    scope: CompiledScope
    regex: re.Pattern[str]
    # Rules out, with substring tests, most texts the regex cannot match (see literals.py).
    literals: LiteralFilter

    def found_in(self, haystack: Haystack) -> bool:
        return self.literals.may_match(haystack) and self.regex.search(haystack.text) is not None


@dataclass(frozen=True, slots=True)
class CompiledToolRule:
    name: str
    action: str
    message: str
    scope: CompiledScope
    tool: re.Pattern[str]
    args: tuple[tuple[str, re.Pattern[str]], ...]
    condition: Condition | None
    slot: int = -1

    def matches_call(self, name: str, args: dict[str, Any]) -> bool:
        """The tool name and the argument patterns; the CEL condition is checked by the engine."""
        if not self.tool.fullmatch(name):
            return False
        for arg, pattern in self.args:
            if arg not in args:
                return False
            value = args[arg]
            if not pattern.search(value if isinstance(value, str) else _as_text(value)):
                return False
        return True


def _as_text(value: Any) -> str:
    return orjson.dumps(value).decode()


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Every compiled rule, grouped by phase, in config order."""

    cel_pre: tuple[CelRule, ...]
    cel_post: tuple[CelRule, ...]
    cel_tool: tuple[CelRule, ...]
    patterns_pre: tuple[PatternRule, ...]
    patterns_post: tuple[PatternRule, ...]
    tools: tuple[CompiledToolRule, ...]
    # What each phase's conditions read: the engine binds only that into the CEL activation.
    needs_pre: Needs
    needs_post: Needs
    needs_tool: Needs
    # Each phase's conditions, evaluated together (a rule's `slot` is its place in its group).
    group_pre: ConditionGroup
    group_post: ConditionGroup
    group_tool: ConditionGroup

    @classmethod
    def compile(cls, section: PoliciesSection, env: CelEnvironment) -> RuleSet:
        groups: dict[str, list[Condition]] = {"pre_call": [], "post_call": [], "tool_call": []}

        def slot(phase: str, condition: Condition | None) -> int:
            if condition is None:
                return -1
            groups[phase].append(condition)
            return len(groups[phase]) - 1

        cel = []
        for rule in section.rules:
            condition = env.compile(rule.when) if rule.when else None
            cel.append(CelRule(rule.name, rule.phase, rule.action, rule.message, CompiledScope.of(rule.scope),
                               condition, slot(rule.phase, condition)))
        patterns = [_pattern_rule(p) for p in section.deny_patterns]
        tools = []
        for tool in section.tools:
            condition = env.compile(tool.when) if tool.when else None
            tools.append(_tool_rule(tool, condition, slot("tool_call", condition)))

        def needs(phase: str) -> Needs:
            return Needs.union(c.needs for c in groups[phase])

        return cls(
            cel_pre=tuple(r for r in cel if r.phase == "pre_call"),
            cel_post=tuple(r for r in cel if r.phase == "post_call"),
            cel_tool=tuple(r for r in cel if r.phase == "tool_call"),
            patterns_pre=tuple(p for p in patterns if p.phase == "pre_call"),
            patterns_post=tuple(p for p in patterns if p.phase == "post_call"),
            tools=tuple(tools),
            needs_pre=needs("pre_call"),
            needs_post=needs("post_call"),
            needs_tool=needs("tool_call"),
            group_pre=env.group(groups["pre_call"]),
            group_post=env.group(groups["post_call"]),
            group_tool=env.group(groups["tool_call"]),
        )


def _pattern_rule(rule: DenyPattern) -> PatternRule:
    regex = re.compile(rule.pattern, re.IGNORECASE if rule.ignore_case else 0)
    return PatternRule(rule.name, rule.phase, rule.message, CompiledScope.of(rule.scope), regex, LiteralFilter(regex))


def _tool_rule(rule: ToolRule, condition: Condition | None, slot: int) -> CompiledToolRule:
    return CompiledToolRule(
        name=rule.name,
        action=rule.action,
        message=rule.message,
        scope=CompiledScope.of(rule.scope),
        tool=re.compile(fnmatch.translate(rule.tool)),
        args=tuple((arg, re.compile(p)) for arg, p in rule.args_match.items()),
        condition=condition,
        slot=slot,
    )
