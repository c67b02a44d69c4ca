"""Where every budget stands right now: spent, reserved by requests in flight, left, and when it resets.

Read from the same counters that enforce the budgets (one store call for all of them), so what an
operator sees is exactly what the next request will be checked against. `reserved` counts requests in
flight and the room replicas hold in leases (`leased`, part of it), whose spend reaches `spent` within
a sync interval; the caller flushes this replica's leases first (`Governance.budget_report`). Scopes listed: global,
each configured team and user, each key that carries budgets (static and virtual), and the session
budget for a session the caller names (sessions are too many to list).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.budgets.periods import window
from gateway.budgets.pricing import MICROS
from gateway.budgets.scopes import counter_base
from gateway.config.governance import BudgetLimit, BudgetsSection
from gateway.config.runtime import Principal
from gateway.store import CounterState, Store


@dataclass(frozen=True, slots=True)
class _Row:
    kind: str
    scope_id: str
    limit: BudgetLimit
    label: str
    reset_at: float | None


def _rows(config: BudgetsSection, keys: list[Principal], session: str | None, now: float) -> list[_Row]:
    found: list[tuple[str, str, BudgetLimit]] = [("global", "global", b) for b in config.global_]
    found += [("team", team, b) for team, limits in sorted(config.teams.items()) for b in limits]
    found += [("user", user, b) for user, limits in sorted(config.users.items()) for b in limits]
    found += [("key", key.identity, b) for key in keys for b in key.budgets]
    if session:
        found += [("session", session, b) for b in config.session]
    rows = []
    for kind, scope_id, limit in found:
        label, reset_at = window(limit.period, now)
        rows.append(_Row(kind, scope_id, limit, label, reset_at))
    return rows


async def budget_status(
    config: BudgetsSection, store: Store, keys: list[Principal], session: str | None, now: float
) -> list[dict[str, Any]]:
    """One entry per budget, in the order global, teams, users, keys, session."""
    rows = _rows(config, keys, session, now)
    names = []
    for row in rows:
        base = counter_base(row.kind, row.scope_id, row.limit, row.label)
        names.append(f"{base}:usd")
        if row.limit.max_tokens is not None:
            names.append(f"{base}:tok")
    states = {s.counter: s for s in await store.counters(names, now)} if names else {}
    out = []
    for row in rows:
        base = counter_base(row.kind, row.scope_id, row.limit, row.label)
        usd = states.get(f"{base}:usd") or CounterState(f"{base}:usd", 0, 0)
        limit_micros = round(row.limit.limit_usd * MICROS)
        entry: dict[str, Any] = {
            "scope": row.kind, "id": row.scope_id, "period": row.limit.period, "window": row.label,
            "resets_at": row.reset_at, "limit_usd": row.limit.limit_usd,
            "spent_usd": usd.used / MICROS, "reserved_usd": usd.reserved / MICROS, "leased_usd": usd.leased / MICROS,
            "remaining_usd": max(0, limit_micros - usd.used - usd.reserved) / MICROS,
            "used_pct": round(100 * usd.used / limit_micros, 2) if limit_micros else None,
        }
        if row.limit.max_tokens is not None:
            tok = states.get(f"{base}:tok") or CounterState(f"{base}:tok", 0, 0)
            entry.update(max_tokens=row.limit.max_tokens, tokens_used=tok.used, tokens_reserved=tok.reserved)
        out.append(entry)
    return out
