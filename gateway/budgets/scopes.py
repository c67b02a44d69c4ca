"""Which budgets a request falls under, and the counters (charges) that enforce them.

Scopes: global, team, key, user and session. Global, team, user and session budgets come from the
config's `budgets:` section; key budgets from the key itself (virtual or static). Each budget limit
becomes a dollar counter named after its scope and window, plus a token counter if it sets
`max_tokens`. A new period is a new counter, so nothing needs resetting.
"""

from __future__ import annotations

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
