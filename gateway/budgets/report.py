"""Spend reports from the store's ledger: totals grouped by key, team, user, session or model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gateway.budgets.pricing import MICROS
from gateway.store import Store

GroupBy = Literal["key", "team", "user", "session", "model"]
GROUPS: tuple[GroupBy, ...] = ("key", "team", "user", "session", "model")


@dataclass(slots=True)
class SpendRow:
    group: str
    requests: int = 0
    spend_micros: int = 0
    tokens: int = 0

    def as_dict(self) -> dict[str, object]:
        return {"group": self.group, "requests": self.requests, "spend_usd": self.spend_micros / MICROS,
                "spend_micros": self.spend_micros, "tokens": self.tokens}


async def spend_report(store: Store, group_by: GroupBy, since: float, until: float) -> list[SpendRow]:
    rows: dict[str, SpendRow] = {}
    for entry in await store.ledger_range(since, until):
        name = str(entry.meta.get(group_by) or "(none)")
        row = rows.setdefault(name, SpendRow(name))
        row.requests += 1
        row.spend_micros += int(entry.charged.get("usd_micros", 0))
        row.tokens += int(entry.charged.get("tokens", 0))
    return sorted(rows.values(), key=lambda r: (-r.spend_micros, r.group))
