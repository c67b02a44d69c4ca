"""Which budgets a request falls under, and the counters (charges) that enforce them.

Scopes: global, team, key, user and session. Global, team, user and session budgets come from the
config's `budgets:` section; key budgets from the key itself (virtual or static). Each budget limit
becomes a dollar counter named after its scope and window, plus a token counter if it sets
`max_tokens`. A new period is a new counter, so nothing needs resetting.

Which counters a caller reserves on is the same for every request of one key (and user, session)
until a window turns, so `BudgetPlans` works it out once per window and each request only fills
in its amounts (measured: 16 us per request to build them every time, about 4 us from the plan).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.budgets.periods import GRACE_SECONDS, WindowCache
from gateway.budgets.pricing import MICROS
from gateway.config.governance import BudgetLimit, BudgetsSection
from gateway.config.runtime import Principal
from gateway.store import Charge

USD = "usd_micros"
TOKENS = "tokens"


@dataclass(frozen=True, slots=True)
class Scope:
    kind: str  # global, team, key, user, session
    id: str
    limit: BudgetLimit
    label: str  # the window, e.g. 2026-11-25
    reset_at: float | None

    @property
    def name(self) -> str:
        return "global" if self.kind == "global" else f"{self.kind} '{self.id}'"


@dataclass(frozen=True, slots=True)
class ScopedCharge:
    charge: Charge
    scope: Scope


def key_identity(principal: Principal) -> str:
    return principal.identity


def scopes_for(
    config: BudgetsSection, principal: Principal, user: str | None, session: str | None, now: float
) -> list[tuple[str, str, BudgetLimit]]:
    found: list[tuple[str, str, BudgetLimit]] = [("global", "global", b) for b in config.global_]
    if principal.team is not None:
        found += [("team", principal.team, b) for b in config.teams.get(principal.team, ())]
    found += [("key", key_identity(principal), b) for b in principal.budgets]
    if user is not None:
        found += [("user", user, b) for b in config.users.get(user, ())]
    if session is not None:
        found += [("session", session, b) for b in config.session]
    return found


def counter_base(kind: str, scope_id: str, limit: BudgetLimit, label: str) -> str:
    """The name shared by a budget's counters in one window (`:usd`, and `:tok` with a token limit)."""
    return f"b:{kind}:{scope_id}:{limit.period}:{label}"


def budget_charges(
    config: BudgetsSection,
    principal: Principal,
    user: str | None,
    session: str | None,
    cost_micros: int,
    tokens: int,
    now: float,
    windows: WindowCache,
) -> list[ScopedCharge]:
    out = []
    for kind, scope_id, limit in scopes_for(config, principal, user, session, now):
        label, reset_at = windows.window(limit.period, now)
        scope = Scope(kind, scope_id, limit, label, reset_at)
        expires = None if reset_at is None else reset_at + GRACE_SECONDS
        base = counter_base(kind, scope_id, limit, label)
        limit_micros = round(limit.limit_usd * MICROS)
        out.append(ScopedCharge(Charge(f"{base}:usd", cost_micros, USD, limit_micros, expires), scope))
        if limit.max_tokens is not None:
            out.append(ScopedCharge(Charge(f"{base}:tok", tokens, TOKENS, limit.max_tokens, expires), scope))
    return out


# Plans kept at most (one per key, user and session seen in the current windows); then start over.
_MAX_PLANS = 10_000


@dataclass(frozen=True, slots=True)
class BudgetPlan:
    principal: Principal
    # The charges with amount 0: the request's are these with its cost or tokens filled in.
    templates: tuple[ScopedCharge, ...]
    # "kind:id" of every scope, sorted: the reserve decision's `scopes` attribute.
    scope_names: str
    valid_until: float  # when the first of its windows ends

    def charges(self, cost_micros: int, tokens: int) -> list[ScopedCharge]:
        if not self.templates:
            return []
        return [
            ScopedCharge(Charge(c.counter, cost_micros if c.unit == USD else tokens, c.unit, c.limit, c.expires_at),
                         t.scope)
            for t in self.templates for c in (t.charge,)
        ]


class BudgetPlans:
    """`budget_charges`, planned once per (key, user, session) and window."""

    def __init__(self, config: BudgetsSection) -> None:
        self._config = config
        self._windows = WindowCache()
        self._plans: dict[tuple[str, str | None, str | None], BudgetPlan] = {}

    def plan(self, principal: Principal, user: str | None, session: str | None, now: float) -> BudgetPlan:
        key = (principal.identity, user, session)
        plan = self._plans.get(key)
        # Same key object (or an equal one: a virtual key re-read), same windows: reuse.
        if plan is not None and now < plan.valid_until and (plan.principal is principal or plan.principal == principal):
            return plan
        templates = budget_charges(self._config, principal, user, session, 0, 0, now, self._windows)
        ends = [t.scope.reset_at for t in templates if t.scope.reset_at is not None]
        plan = BudgetPlan(principal, tuple(templates), ",".join(sorted({f"{t.scope.kind}:{t.scope.id}" for t in templates})),
                          min(ends, default=math.inf))
        if len(self._plans) >= _MAX_PLANS:
            self._plans.clear()
        self._plans[key] = plan
        return plan
