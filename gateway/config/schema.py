"""The config file's schema: LiteLLM proxy's model sections plus Lockgate's own sections.

LiteLLM's sections (`model_list`, `router_settings`, `general_settings`, `litellm_settings`, ...)
accept every key LiteLLM does: the keys Lockgate implements are typed here, the rest are kept so the
loader can warn about them by name, never refuse them. Lockgate's own sections forbid unknown keys,
so a typo is an error that names its path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.config.governance import AuditSection, BudgetLimit, BudgetsSection, RateLimitsSection
from gateway.config.policies import ApprovalsSection, PoliciesSection
from gateway.store import validate_store_url


class Strict(BaseModel):
    """Lockgate's own sections: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Lenient(BaseModel):
    """LiteLLM's sections: unknown keys are kept and reported as warnings by the loader."""

    model_config = ConfigDict(extra="allow", frozen=True)


# ---------------------------------------------------------------- LiteLLM-compatible sections


class LitellmParams(Lenient):
    model: str = Field(min_length=1)
    api_base: str | None = None
    api_key: str | None = None
    api_version: str | None = None
    organization: str | None = None
    rpm: int | None = Field(default=None, ge=0)
    tpm: int | None = Field(default=None, ge=0)
    weight: float = Field(default=1.0, gt=0)
    timeout: float | None = Field(default=None, gt=0)
    stream_timeout: float | None = Field(default=None, gt=0)
    max_retries: int | None = Field(default=None, ge=0)
    # Lockgate's finer timeouts, accepted per deployment beside LiteLLM's.
    connect_timeout: float | None = Field(default=None, gt=0)
    first_token_timeout: float | None = Field(default=None, gt=0)
    idle_timeout: float | None = Field(default=None, gt=0)


class ModelInfo(Lenient):
    id: str | None = None
    max_input_tokens: int | None = Field(default=None, gt=0)
    max_output_tokens: int | None = Field(default=None, gt=0)
    input_cost_per_token: float | None = Field(default=None, ge=0)
    output_cost_per_token: float | None = Field(default=None, ge=0)


class ModelEntry(Lenient):
    model_name: str = Field(min_length=1)
    litellm_params: LitellmParams
    model_info: ModelInfo = ModelInfo()


RoutingStrategy = Literal[
    "simple-shuffle", "latency-based-routing", "least-busy", "usage-based-routing", "usage-based-routing-v2"
]


class RouterSettings(Lenient):
    routing_strategy: RoutingStrategy = "simple-shuffle"
    num_retries: int = Field(default=2, ge=0, le=10)
    timeout: float = Field(default=600.0, gt=0)
    fallbacks: list[dict[str, list[str]]] = []
    context_window_fallbacks: list[dict[str, list[str]]] = []
    content_policy_fallbacks: list[dict[str, list[str]]] = []
    allowed_fails: int = Field(default=3, ge=1)
    cooldown_time: float = Field(default=30.0, gt=0)
    retry_after: float = Field(default=0.0, ge=0)


class GeneralSettings(Lenient):
    master_key: str | None = None


class LitellmSettings(Lenient):
    pass


# ---------------------------------------------------------------- Lockgate's own sections


class ServerSection(Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=4000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    # Seconds a request may take overall, unless the deployment or router says otherwise.
    request_timeout: float | None = Field(default=None, gt=0)
    # One INFO line per request on the `lockgate.access` logger (ids, status, model, deployment, cost).
    access_log: bool = False
    # On SIGTERM, seconds the requests in flight get to finish before they are cut off (a stream from
    # a reasoning model can take minutes). Requests waiting for a reviewer answer at once regardless.
    shutdown_grace: int = Field(default=10, ge=0)


class StaticKey(Strict):
    name: str = Field(min_length=1)
    key: str = Field(min_length=8)
    team: str | None = None
    user: str | None = None
    # Model groups this key may call; empty means every model.
    models: list[str] = []
    budgets: list[BudgetLimit] = []
    rpm: int | None = Field(default=None, ge=0)
    tpm: int | None = Field(default=None, ge=0)

    @field_validator("key")
    @classmethod
    def _no_whitespace(cls, value: str) -> str:
        if value.strip() != value or " " in value:
            raise ValueError("a key must not contain spaces")
        return value


class BreakersSection(Strict):
    """Circuit breakers per deployment; unset values follow `router_settings.allowed_fails`/`cooldown_time`."""

    enabled: bool = True
    # Consecutive failures (5xx, connection errors, timeouts, bad bodies) that open a breaker.
    failure_threshold: int | None = Field(default=None, ge=1)
    # Seconds a breaker stays open before one probe request is let through.
    reset_timeout: float | None = Field(default=None, gt=0)


class RoutingSection(Strict):
    """Retry backoff and per-group strategies (the default is `router_settings.routing_strategy`)."""

    # Seconds before the first retry of a deployment; doubles per retry (with jitter) up to the max.
    retry_backoff: float = Field(default=0.5, gt=0)
    max_backoff: float = Field(default=8.0, gt=0)
    # model_name -> strategy for that group.
    strategies: dict[str, RoutingStrategy] = {}


    # Seconds between reads of the store's shared 429 cooldowns (one read per interval per replica).
    cooldown_refresh: float = Field(default=1.0, ge=0)
class OtlpSection(Strict):
    """Where spans and metrics go; unset keys fall back to the standard OTEL_EXPORTER_OTLP_* variables."""

    endpoint: str | None = None
    protocol: Literal["http/protobuf", "grpc"] | None = None
    # Sent with every export (a collector's auth token): use os.environ/NAME for secrets.
    headers: dict[str, str] = {}
    timeout: float | None = Field(default=None, gt=0)
    # TLS to an https collector (PEM files): a CA to trust its certificate (a private CA), and this
    # gateway's own certificate and key when the collector asks for one (mTLS). Unset: the standard
    # OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]CERTIFICATE, _CLIENT_CERTIFICATE and _CLIENT_KEY.
    certificate: str | None = None
    client_certificate: str | None = None
    client_key: str | None = None

    @field_validator("endpoint")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("certificate", "client_certificate", "client_key")
    @classmethod
    def _file(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError("no such file (a PEM file is expected)")
        return value

    @model_validator(mode="after")
    def _pair(self) -> OtlpSection:
        if (self.client_certificate is None) != (self.client_key is None):
            raise ValueError("client_certificate and client_key go together")
        return self


class TelemetrySection(Strict):
    # None: tracing is on when an OTLP endpoint is set (here or in OTEL_EXPORTER_OTLP_*ENDPOINT).
    tracing: bool | None = None
    # Metrics are cheap and on by default; `prometheus` serves them on GET /metrics.
    metrics: bool = True
    prometheus: bool = True
    service_name: str | None = None
    sample_ratio: float = Field(default=1.0, ge=0, le=1)
    # None: follow OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT (off when unset).
    capture_message_content: bool | None = None
    metrics_export_interval: float = Field(default=60.0, gt=0)
    resource_attributes: dict[str, str] = {}
    otlp: OtlpSection = OtlpSection()


class StoreSection(Strict):
    """Where durable state lives: `sqlite:///path` (embedded default) or `redis://host:port/db`."""

    url: str = "sqlite:///lockgate.db"
    # Seconds to wait for the store before treating it as unreachable.
    timeout: float = Field(default=2.0, gt=0)

    @field_validator("url")
    @classmethod
    def _supported(cls, value: str) -> str:
        return validate_store_url(value)


class ConfigFile(BaseModel):
    """The whole file. Top-level keys that are neither LiteLLM's nor Lockgate's are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_list: list[ModelEntry] = []
    router_settings: RouterSettings = RouterSettings()
    general_settings: GeneralSettings = GeneralSettings()
    litellm_settings: LitellmSettings = LitellmSettings()
    # LiteLLM sections Lockgate reads nothing from; accepted so a LiteLLM file loads unchanged.
    environment_variables: dict[str, Any] | None = None
    guardrails: Any = None
    credential_list: Any = None
    callback_settings: Any = None
    mcp_servers: Any = None
    model_group_alias: Any = None

    server: ServerSection = ServerSection()
    keys: list[StaticKey] = []
    breakers: BreakersSection = BreakersSection()
    routing: RoutingSection = RoutingSection()
    telemetry: TelemetrySection = TelemetrySection()
    policies: PoliciesSection = PoliciesSection()
    approvals: ApprovalsSection = ApprovalsSection()
    # `store: sqlite:///lockgate.db` or the long form `store: {url: ..., timeout: ...}`.
    store: StoreSection = StoreSection()
    budgets: BudgetsSection = BudgetsSection()
    audit: AuditSection = AuditSection()
    rate_limits: RateLimitsSection = RateLimitsSection()

    @field_validator("store", mode="before")
    @classmethod
    def _store_url(cls, value: Any) -> Any:
        return {"url": value} if isinstance(value, str) else value


# LiteLLM sections whose presence Lockgate notices but does not act on.
IGNORED_LITELLM_SECTIONS = (
    "environment_variables",
    "guardrails",
    "credential_list",
    "callback_settings",
    "mcp_servers",
    "model_group_alias",
)
