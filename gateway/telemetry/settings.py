"""What telemetry a gateway runs with: the `telemetry:` section merged with the standard OTEL_* variables.

The config file wins where it says something; otherwise the standard variables apply
(`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_PROTOCOL`,
`OTEL_SERVICE_NAME`, `OTEL_SDK_DISABLED`, `OTEL_TRACES_EXPORTER=none`,
`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`, `OTEL_SEMCONV_STABILITY_OPT_IN`,
`OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, `OTEL_BSP_MAX_QUEUE_SIZE`, and for TLS
`OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]CERTIFICATE`, `_CLIENT_CERTIFICATE`, `_CLIENT_KEY`).

Tracing is on when the config says `tracing: true`, or when it says nothing and an OTLP endpoint is
known (config or environment): a user who points the gateway at a collector expects traces; one who
does not pays nothing for them. Metrics are on unless `metrics: false` (GET /metrics works out of the
box) and are exported over OTLP only when an endpoint is known.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

from gateway.config.loader import ConfigError
from gateway.config.runtime import TelemetryConfig
from gateway.telemetry.semconv import ENV_CAPTURE_CONTENT, StabilityOptIn

DEFAULT_SERVICE_NAME = "lockgate"
HTTP_PROTOCOL = "http/protobuf"
GRPC_PROTOCOL = "grpc"
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True, slots=True)
class OtlpTls:
    """PEM files for TLS to an https collector: a CA to trust its certificate (None: the system's),
    and this gateway's certificate and key when the collector asks for one (mTLS)."""

    certificate: str | None = None
    client_certificate: str | None = None
    client_key: str | None = None

    def context_for(self, url: str) -> ssl.SSLContext | None:
        """The TLS context for an https `url`; None for plain http."""
        return self.context() if url.startswith("https://") else None

    def context(self) -> ssl.SSLContext:
        """The client-side TLS context; a file that cannot be read is a `ConfigError` naming where it came from."""
        try:
            context = ssl.create_default_context(cafile=self.certificate)
            if self.client_certificate is not None:
                context.load_cert_chain(self.client_certificate, self.client_key)
        except (OSError, ssl.SSLError) as exc:
            raise unreadable_tls(exc) from None
        return context


def unreadable_tls(exc: Exception) -> ConfigError:
    return ConfigError([f"telemetry.otlp TLS files (or OTEL_EXPORTER_OTLP_*CERTIFICATE/_KEY): {exc}"])


@dataclass(frozen=True, slots=True)
class TelemetrySettings:
    tracing: bool
    metrics: bool
    prometheus: bool
    service_name: str
    sample_ratio: float
    capture_content: bool
    # Full URL for spans (.../v1/traces for HTTP) and for metrics; None: nothing is exported.
    traces_endpoint: str | None
    metrics_endpoint: str | None
    # The spans' protocol and headers; metrics have their own below (the OTLP exporter spec lets
    # OTEL_EXPORTER_OTLP_TRACES_* and _METRICS_* differ).
    protocol: str
    headers: tuple[tuple[str, str], ...]
    compression: str | None
    timeout: float
    metrics_export_interval: float
    resource_attributes: tuple[tuple[str, str], ...]
    stability: StabilityOptIn
    # Span batching (the standard OTEL_BSP_* variables): at most every `batch_delay` seconds, or as
    # soon as `max_batch` spans wait; beyond `max_queue` waiting spans, new ones are dropped (counted).
    traces_tls: OtlpTls = OtlpTls()
    metrics_tls: OtlpTls = OtlpTls()
    # gRPC only: OTEL_EXPORTER_OTLP_(TRACES_)INSECURE, None when unset (the endpoint's scheme decides).
    traces_insecure: bool | None = None
    metrics_protocol: str = HTTP_PROTOCOL
    metrics_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    batch_delay: float = 5.0
    max_batch: int = 512
    max_queue: int = 2048


def resolve(config: TelemetryConfig, environ: Mapping[str, str]) -> TelemetrySettings:
    protocol = config.otlp_protocol or _protocol("TRACES", environ)
    metrics_protocol = config.otlp_protocol or _protocol("METRICS", environ)
    base = config.otlp_endpoint or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None
    traces = _signal_endpoint(base, "traces", protocol, environ, explicit=config.otlp_endpoint is not None)
    metrics = _signal_endpoint(base, "metrics", metrics_protocol, environ, explicit=config.otlp_endpoint is not None)
    disabled = environ.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE
    traces_off = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none"
    tracing = config.tracing if config.tracing is not None else (traces is not None and not traces_off)
    capture = config.capture_message_content
    if capture is None:
        capture = environ.get(ENV_CAPTURE_CONTENT, "").strip().lower() in _TRUE
    timeout = config.otlp_timeout or _seconds(environ.get("OTEL_EXPORTER_OTLP_TIMEOUT"), 10.0)
    return TelemetrySettings(
        tracing=tracing and not disabled,
        metrics=config.metrics and not disabled,
        prometheus=config.prometheus and config.metrics and not disabled,
        service_name=config.service_name or environ.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME,
        sample_ratio=config.sample_ratio,
        capture_content=capture,
        traces_endpoint=traces,
        metrics_endpoint=metrics,
        protocol=protocol,
        headers=config.otlp_headers or _headers("TRACES", environ),
        compression=_compression(environ),
        timeout=timeout,
        metrics_export_interval=config.metrics_export_interval,
        resource_attributes=config.resource_attributes,
        stability=StabilityOptIn.from_env(environ),
        traces_tls=_tls(config, "TRACES", environ),
        metrics_tls=_tls(config, "METRICS", environ),
        traces_insecure=_insecure(environ),
        metrics_protocol=metrics_protocol,
        metrics_headers=config.otlp_headers or _headers("METRICS", environ),
        batch_delay=_positive(environ.get("OTEL_BSP_SCHEDULE_DELAY"), 5000) / 1000,
        max_batch=int(_positive(environ.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE"), 512)),
        max_queue=int(_positive(environ.get("OTEL_BSP_MAX_QUEUE_SIZE"), 2048)),
    )


def _tls(config: TelemetryConfig, signal: str, environ: Mapping[str, str]) -> OtlpTls:
    """The config file's TLS files, else the signal's own OTEL_EXPORTER_OTLP_<SIGNAL>_* variables, else
    the general ones (the OTLP exporter spec's order)."""
    if any(config.otlp_tls):
        return OtlpTls(*config.otlp_tls)

    def env(name: str) -> str | None:
        return environ.get(f"OTEL_EXPORTER_OTLP_{signal}_{name}") or environ.get(f"OTEL_EXPORTER_OTLP_{name}") or None

    return OtlpTls(env("CERTIFICATE"), env("CLIENT_CERTIFICATE"), env("CLIENT_KEY"))


def _insecure(environ: Mapping[str, str]) -> bool | None:
    value = environ.get("OTEL_EXPORTER_OTLP_TRACES_INSECURE") or environ.get("OTEL_EXPORTER_OTLP_INSECURE")
    return None if value is None or not value.strip() else value.strip().lower() == "true"


def _protocol(signal: str, environ: Mapping[str, str]) -> str:
    """OTEL_EXPORTER_OTLP_<SIGNAL>_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL: grpc or http/protobuf."""
    value = environ.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or ""
    return GRPC_PROTOCOL if value.strip().lower() == GRPC_PROTOCOL else HTTP_PROTOCOL


def _signal_endpoint(
    base: str | None, signal: str, protocol: str, environ: Mapping[str, str], explicit: bool
) -> str | None:
    """The per-signal URL: a signal-specific variable is used as is; a base gets `/v1/<signal>` (HTTP)."""
    specific = None if explicit else environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    if specific:
        return specific
    if not base:
        return None
    if protocol == GRPC_PROTOCOL:
        return base
    return base.rstrip("/") + f"/v1/{signal}"


def _headers(signal: str, environ: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """OTEL_EXPORTER_OTLP_<SIGNAL>_HEADERS, else OTEL_EXPORTER_OTLP_HEADERS: `key=value,key2=value2`, values
    URL-encoded."""
    raw = environ.get(f"OTEL_EXPORTER_OTLP_{signal}_HEADERS") or environ.get("OTEL_EXPORTER_OTLP_HEADERS") or ""
    pairs = []
    for item in raw.split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            pairs.append((unquote(key.strip()), unquote(value.strip())))
    return tuple(pairs)


def _compression(environ: Mapping[str, str]) -> str | None:
    value = (environ.get("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION") or environ.get("OTEL_EXPORTER_OTLP_COMPRESSION") or "")
    return "gzip" if value.strip().lower() == "gzip" else None


def _seconds(value: str | None, default: float) -> float:
    # OTEL_EXPORTER_OTLP_TIMEOUT is in milliseconds.
    try:
        return float(value) / 1000 if value else default
    except ValueError:
        return default


def _positive(value: str | None, default: float) -> float:
    """A positive number from an environment variable; the default when absent or not a positive number."""
    try:
        number = float(value) if value else default
    except ValueError:
        return default
    return number if number > 0 else default
