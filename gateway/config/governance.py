"""Config sections for governance: budgets, rate limits and alerts (all `Strict`: typos are errors).

```yaml
budgets:
  on_store_error: closed           # closed (refuse, the default) or open (serve, uncounted)
  leases: true                     # busy keys spend from leased room, synced every lease_interval
  lease_interval: 0.05             # seconds
  global: [{limit_usd: 100, period: monthly}]
  teams: {eng: [{limit_usd: 20, period: daily, max_tokens: 2000000}]}
  users: {alice: [{limit_usd: 5, period: daily}]}
  session: [{limit_usd: 1, period: total}]      # applies to each x-lockgate-session-id
  alerts:
    thresholds: [0.5, 0.8, 1.0]
    webhooks: [{url: "https://hooks.slack.com/...", format: slack}, {url: "http://...", format: json}]
rate_limits:
  on_store_error: open
  default: {rpm: 600, tpm: 100000}             # per key, unless the key sets its own
```

The same `BudgetLimit` shape is used by virtual keys (`budgets:` on a key) and static keys.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Period = Literal["daily", "weekly", "monthly", "total"]
FailureMode = Literal["open", "closed"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BudgetLimit(_Strict):
    """A dollar limit over a period, with an optional token limit over the same period."""

    limit_usd: float = Field(ge=0)
    period: Period = "monthly"
    max_tokens: int | None = Field(default=None, ge=0)


class RateLimit(_Strict):
    rpm: int | None = Field(default=None, ge=0)
    tpm: int | None = Field(default=None, ge=0)


class Webhook(_Strict):
    url: str
    format: Literal["slack", "json"] = "json"

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("a webhook url must start with http:// or https://")
        return value


class AlertsSection(_Strict):
    thresholds: list[float] = [0.5, 0.8, 1.0]
    webhooks: list[Webhook] = []
    # Attempts per webhook delivery, with exponential backoff between them.
    max_attempts: int = Field(default=5, ge=1, le=20)
    backoff_seconds: float = Field(default=0.5, gt=0)

    @field_validator("thresholds")
    @classmethod
    def _fractions(cls, value: list[float]) -> list[float]:
        if any(not 0 < t <= 10 for t in value):
            raise ValueError("thresholds are fractions of the limit, e.g. 0.5 for 50%")
        return sorted(set(value))


class BudgetsSection(_Strict):
    on_store_error: FailureMode = "closed"
    # Record every request's spend in the ledger (for reports) even when no budget applies to it:
    # one store write after such a call. False: requests without budgets or limits never touch the store.
    record_spend: bool = True
    # Seconds after which an unsettled reservation expires and is charged by the sweeper.
    reservation_ttl: float = Field(default=900.0, gt=0)
    # Days the spend ledger (what spend reports read) keeps an entry; null keeps every entry forever.
    # Budgets never read it (their counters do), so this bounds only the reports' reach and the
    # store's size: a Redis store keeps the ledger in memory.
    ledger_retention_days: float | None = Field(default=90.0, gt=0)
    # Busy plans far from their limits spend from leases (no store call per request; see
    # gateway/budgets/leases.py); their spend reaches the store every `lease_interval` seconds.
    leases: bool = True
    lease_interval: float = Field(default=0.05, gt=0, le=5)
    global_: list[BudgetLimit] = Field(default=[], alias="global")
    teams: dict[str, list[BudgetLimit]] = {}
    users: dict[str, list[BudgetLimit]] = {}
    session: list[BudgetLimit] = []
    alerts: AlertsSection = AlertsSection()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class AuditSection(_Strict):
    # Seconds over which repeats of one refusal or denial (same who, what, target and why) are counted
    # into one audit entry rather than written one each (gateway/audit/folding.py); 0 writes every one.
    fold_repeats_seconds: float = Field(default=60.0, ge=0, le=86_400)
    # Days an entry is kept; null (the default) keeps the whole log. Deleting is itself an audit entry,
    # and `lockgate audit verify` checks what is kept from the last deleted entry on.
    retention_days: float | None = Field(default=None, gt=0)


class RateLimitsSection(_Strict):
    on_store_error: FailureMode = "open"
    default: RateLimit = RateLimit()
