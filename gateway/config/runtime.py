"""The frozen runtime config the app is built from: resolved, validated, ready for the hot path."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.config.governance import AuditSection, BudgetLimit, BudgetsSection, RateLimit, RateLimitsSection
from gateway.config.policies import ApprovalsSection, PoliciesSection

Route = Literal["passthrough", "litellm", "fake"]


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds; None means no limit of that kind beyond the total."""

    total: float
    connect: float | None = None
    first_token: float | None = None
    idle: float | None = None


@dataclass(frozen=True, slots=True)
class Deployment:
    """One `model_list` entry: a concrete upstream model that can serve a model group."""

    id: str
    group: str
    route: Route
    # `gen_ai.provider.name` for telemetry.
    provider: str
    # The model name the upstream expects (pass-through) or LiteLLM's `provider/name` (litellm).
    upstream_model: str
    api_base: str | None
    api_key: str | None = field(repr=False)
    weight: float = 1.0
    rpm: int | None = None
    tpm: int | None = None
    timeouts: Timeouts = Timeouts(total=600.0)
    max_retries: int | None = None
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None
    input_cost_per_token: float | None = None
    output_cost_per_token: float | None = None
    # Other litellm_params, handed to litellm for non-compatible providers.
    extra_params: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class ModelGroup:
    name: str
    deployments: tuple[Deployment, ...]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a configured key or the master key."""

    name: str
    is_master: bool = False
    team: str | None = None
    user: str | None = None
    # Model groups this principal may call; None means every model.
    models: frozenset[str] | None = None
    # Governance: a virtual key's id (None for static keys), its budgets, rate limit and expiry.
    key_id: str | None = None

    @property
    def identity(self) -> str:
        """Stable id of the key: a virtual key's id, else the configured name (master, static keys)."""
        return self.key_id or self.name
    budgets: tuple[BudgetLimit, ...] = ()
    rate_limit: RateLimit | None = None
    expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class RouterConfig:
    strategy: str = "simple-shuffle"
    num_retries: int = 2
    timeout: float = 600.0
    fallbacks: tuple[tuple[str, tuple[str, ...]], ...] = ()
    context_window_fallbacks: tuple[tuple[str, tuple[str, ...]], ...] = ()
    content_policy_fallbacks: tuple[tuple[str, tuple[str, ...]], ...] = ()
    allowed_fails: int = 3
    cooldown_time: float = 30.0
    # Resilience (the `routing:` and `breakers:` sections, and router_settings.retry_after).
    group_strategies: tuple[tuple[str, str], ...] = ()
    retry_backoff: float = 0.5
    max_backoff: float = 8.0
    min_retry_wait: float = 0.0
    breakers_enabled: bool = True
    breaker_threshold: int = 3
    breaker_reset: float = 30.0
    cooldown_refresh: float = 1.0


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 4000
    workers: int = 1
    max_body_bytes: int = 4 * 1024 * 1024
    access_log: bool = False
    shutdown_grace: int = 10


@dataclass(frozen=True, slots=True)
class StoreConfig:
    url: str = field(default="sqlite:///lockgate.db", repr=False)
    timeout: float = 2.0


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    """The `telemetry:` section as written; gateway/telemetry/settings.py merges the OTEL_* variables."""

    tracing: bool | None = None
    metrics: bool = True
    prometheus: bool = True
    service_name: str | None = None
    sample_ratio: float = 1.0
    capture_message_content: bool | None = None
    metrics_export_interval: float = 60.0
    resource_attributes: tuple[tuple[str, str], ...] = ()
    otlp_endpoint: str | None = None
    otlp_protocol: str | None = None
    otlp_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    otlp_timeout: float | None = None
    otlp_tls: tuple[str | None, str | None, str | None] = (None, None, None)  # CA, client certificate, key


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    groups: dict[str, ModelGroup]
    router: RouterConfig
    server: ServerConfig
    master_key: str | None = field(repr=False)
    # Static keys from the config: secret -> principal.
    keys: dict[str, Principal] = field(repr=False)
    warnings: tuple[str, ...] = ()
    telemetry: TelemetryConfig = TelemetryConfig()
    store: StoreConfig = StoreConfig()
    budgets: BudgetsSection = BudgetsSection()
    audit: AuditSection = AuditSection()
    rate_limits: RateLimitsSection = RateLimitsSection()
    policies: PoliciesSection = field(default_factory=PoliciesSection)
    approvals: ApprovalsSection = field(default_factory=ApprovalsSection)

    @property
    def auth_enabled(self) -> bool:
        return self.master_key is not None or bool(self.keys)

    def secrets(self) -> tuple[str, ...]:
        """Every secret the config holds, so error text can be scrubbed of them."""
        found = [self.master_key or "", *self.keys]
        for group in self.groups.values():
            found.extend(d.api_key or "" for d in group.deployments)
        found.extend(value for _, value in self.telemetry.otlp_headers)
        return tuple(s for s in found if s)
