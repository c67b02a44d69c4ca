"""Governance and oversight metrics, read from the decisions stages record on a request.

Budgets, rate limits, capacity, policies and holds record what they decided as decisions (span
events); this module counts the ones an operator alerts on, with labels that stay bounded: a
policy rule's name and action (rules come from the config), a budget scope's kind (never a user or
session id), an alert's threshold. Stages need not know about metrics; a new decision needs only
a row in `_RULES` to be counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.context import Decision
from gateway.telemetry import semconv as sc

Attrs = dict[str, Any]


@dataclass(frozen=True, slots=True)
class DecisionCounter:
    metric: str
    unit: str
    description: str
    # (series key, label builder) from the decision; None: not counted.
    labels: Callable[[Decision], tuple[tuple[Any, ...], Attrs] | None]
    amount: Callable[[Decision], float] = lambda d: 1.0


def _scope_kind(decision: Decision) -> str:
    scope = str(decision.attributes.get("scope", ""))
    return scope.split(":", 1)[0] or "unknown"


def _verdict(d: Decision) -> tuple[tuple[Any, ...], Attrs]:
    rule, action, phase = (str(d.attributes.get(k, "")) for k in ("rule", "action", "phase"))
    return (rule, action, phase), {sc.LOCKGATE_POLICY_RULE: rule, sc.LOCKGATE_POLICY_ACTION: action,
                                   sc.LOCKGATE_POLICY_PHASE: phase}


def _by_scope(d: Decision) -> tuple[tuple[Any, ...], Attrs]:
    kind = _scope_kind(d)
    return (kind,), {sc.LOCKGATE_BUDGET_SCOPE: kind}


def _alert(d: Decision) -> tuple[tuple[Any, ...], Attrs]:
    kind, threshold = _scope_kind(d), float(d.attributes.get("threshold", 0.0))
    return (kind, threshold), {sc.LOCKGATE_BUDGET_SCOPE: kind, sc.LOCKGATE_ALERT_THRESHOLD: threshold}


def _rate(d: Decision) -> tuple[tuple[Any, ...], Attrs]:
    kind = str(d.attributes.get("kind", ""))
    return (kind,), {sc.LOCKGATE_LIMIT_KIND: kind}


def _none(d: Decision) -> tuple[tuple[Any, ...], Attrs]:
    return (), {}


def _spend(d: Decision) -> tuple[tuple[Any, ...], Attrs] | None:
    return ((), {}) if isinstance(d.attributes.get("charged_usd_micros"), int) else None


_RULES: dict[str, DecisionCounter] = {
    "lockgate.policy.verdict": DecisionCounter(
        sc.METRIC_POLICY_VERDICTS, "{verdict}", "Policy verdicts by rule, action and phase.", _verdict),
    "lockgate.budget.refused": DecisionCounter(
        sc.METRIC_BUDGET_REFUSALS, "{request}", "Requests refused by a budget, by the budget's scope kind.", _by_scope),
    "lockgate.budget.settle": DecisionCounter(
        sc.METRIC_BUDGET_SPEND, "{USD}", "Spend charged to budgets and the ledger, at the deployments' prices.",
        _spend, lambda d: int(d.attributes["charged_usd_micros"]) / 1_000_000),
    "lockgate.budget.alert": DecisionCounter(
        sc.METRIC_BUDGET_ALERTS, "{alert}", "Budget alerts fired, by scope kind and threshold.", _alert),
    "lockgate.ratelimit.refused": DecisionCounter(
        sc.METRIC_RATELIMIT_REFUSALS, "{request}", "Requests refused by a key's rate limit, by limit kind.", _rate),
    "lockgate.capacity.exhausted": DecisionCounter(
        sc.METRIC_CAPACITY_EXHAUSTED, "{request}", "Requests refused because every deployment was at capacity.",
        _none),
    "lockgate.approval.hold": DecisionCounter(
        sc.METRIC_HOLDS, "{hold}", "Responses held for a human's approval.", _none),
}


def counters() -> list[DecisionCounter]:
    """Every decision counter, each once (for registering the instruments)."""
    return list(_RULES.values())


def counter_for(name: str) -> DecisionCounter | None:
    return _RULES.get(name)
