"""Budget alerts and their webhook payloads (Slack-compatible and generic JSON); `gateway/webhooks.py`
delivers them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Alert:
    scope_kind: str
    scope_id: str
    period: str
    window: str
    threshold: float
    limit_micros: int
    spent_micros: int
    reset_at: float | None
    fired_at: float
    reason: str  # "crossed" (settled spend passed it) or "refused" (a request did not fit)

    @property
    def scope_name(self) -> str:
        return "global" if self.scope_kind == "global" else f"{self.scope_kind} '{self.scope_id}'"

    def text(self) -> str:
        reset = (
            "does not reset" if self.reset_at is None
            else "resets " + datetime.fromtimestamp(self.reset_at, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
        )
        return (
            f"Lockgate budget alert: {self.scope_name} reached {self.threshold:.0%} of its {self.period} budget "
            f"(spent ${self.spent_micros / 1e6:,.4f} of ${self.limit_micros / 1e6:,.2f}; {reset})."
        )


def payload(alert: Alert, fmt: str) -> dict[str, Any]:
    if fmt == "slack":
        return {"text": alert.text()}
    return {
        "type": "lockgate.budget.threshold",
        "scope": {"kind": alert.scope_kind, "id": alert.scope_id},
        "period": alert.period,
        "window": alert.window,
        "threshold": alert.threshold,
        "limit_usd": alert.limit_micros / 1e6,
        "spent_usd": alert.spent_micros / 1e6,
        "reset_at": alert.reset_at,
        "fired_at": alert.fired_at,
        "reason": alert.reason,
        "message": alert.text(),
    }
