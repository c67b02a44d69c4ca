"""Load a YAML config: resolve `os.environ/NAME`, validate, warn, and build the runtime config.

Every problem is reported with the key path it sits at (`model_list[0].litellm_params.model`), and
all problems are reported together so one run of `lockgate check` shows everything to fix. Values are
never echoed in messages: they may be secrets.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from gateway.config.catalog import FAKE_PROVIDER, OPENAI_COMPATIBLE, split_model
from gateway.config.governance import RateLimit
from gateway.config.policies import cross_check as check_policies
from gateway.config.runtime import (
    Deployment,
    ModelGroup,
    Principal,
    RouterConfig,
    RuntimeConfig,
    ServerConfig,
    StoreConfig,
    TelemetryConfig,
    Timeouts,
)
from gateway.config.schema import IGNORED_LITELLM_SECTIONS, ConfigFile, Lenient, ModelEntry

ENV_PREFIX = "os.environ/"


class ConfigError(Exception):
    """The config cannot be used. `problems` holds one `path: message` line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> RuntimeConfig:
    """Read and validate a config file; raise `ConfigError` naming every problem's key path."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the file ({exc.strerror})"]) from None
    return parse_config(text, source=str(path), environ=environ)


def parse_config(text: str, source: str = "<config>", environ: Mapping[str, str] | None = None) -> RuntimeConfig:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([f"{source}: not valid YAML{where}"]) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"{source}: the top level must be a mapping of sections"])
    return build_config(raw, environ if environ is not None else os.environ)


def build_config(raw: dict[str, Any], environ: Mapping[str, str]) -> RuntimeConfig:
    problems: list[str] = []
    resolved = _resolve_env(raw, "", environ, problems)
    try:
        parsed = ConfigFile.model_validate(resolved)
    except ValidationError as exc:
        problems.extend(_format_validation_error(exc, resolved))
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)

    warnings = _litellm_warnings(parsed)
    config = _to_runtime(parsed, problems, warnings)
    if problems:
        raise ConfigError(problems)
    return config


def _resolve_env(value: Any, path: str, environ: Mapping[str, str], problems: list[str]) -> Any:
    if isinstance(value, str) and value.startswith(ENV_PREFIX):
        name = value[len(ENV_PREFIX) :]
        if name not in environ:
            problems.append(f"{path}: environment variable {name} is not set")
            return None
        return environ[name]
    if isinstance(value, dict):
        return {k: _resolve_env(v, _join(path, str(k)), environ, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_env(v, f"{path}[{i}]", environ, problems) for i, v in enumerate(value)]
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out = f"{out}[{part}]" if isinstance(part, int) else _join(out, part)
    return out or "<top level>"


def _format_validation_error(exc: ValidationError, raw: Any) -> list[str]:
    lines = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = tuple(err["loc"])
        path = _format_loc(loc)
        if err["type"] == "extra_forbidden":
            known = _known_keys_at(loc[:-1], raw)
            hint = difflib.get_close_matches(str(loc[-1]), known, n=1)
            suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
            lines.append(f"{path}: unknown key{suggestion}")
        else:
            lines.append(f"{path}: {err['msg']}")
    return lines


def _known_keys_at(loc: tuple[int | str, ...], raw: Any) -> list[str]:
    """The field names of the model that sits at `loc`, for 'did you mean' hints."""
    model: type[BaseModel] | None = ConfigFile
    for part in loc:
        if model is None or isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [annotation, *args]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
    return list(model.model_fields) if model else []


def _litellm_warnings(parsed: ConfigFile) -> list[str]:
    """LiteLLM settings Lockgate does not implement: named, never refused."""
    warnings: list[str] = []

    def extras(model: Lenient, path: str) -> None:
        for key in model.model_extra or {}:
            hint = difflib.get_close_matches(key, list(type(model).model_fields), n=1, cutoff=0.75)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
            warnings.append(f"{_join(path, key)}: LiteLLM setting not implemented by Lockgate; ignored{suggestion}")

    for i, entry in enumerate(parsed.model_list):
        extras(entry, f"model_list[{i}]")
        extras(entry.litellm_params, f"model_list[{i}].litellm_params")
    extras(parsed.router_settings, "router_settings")
    extras(parsed.general_settings, "general_settings")
    extras(parsed.litellm_settings, "litellm_settings")
    for section in IGNORED_LITELLM_SECTIONS:
        if getattr(parsed, section) is not None:
            warnings.append(f"{section}: LiteLLM section not implemented by Lockgate; ignored")
    return warnings


def _to_runtime(parsed: ConfigFile, problems: list[str], warnings: list[str]) -> RuntimeConfig:
    router = parsed.router_settings
    groups: dict[str, list[Deployment]] = {}
    seen_ids: set[str] = set()
    for i, entry in enumerate(parsed.model_list):
        deployment = _deployment(entry, i, router.timeout, problems)
        if deployment is None:
            continue
        if deployment.id in seen_ids:
            problems.append(f"model_list[{i}].model_info.id: duplicate deployment id '{deployment.id}'")
        seen_ids.add(deployment.id)
        groups.setdefault(deployment.group, []).append(deployment)

    def chains(name: str, value: list[dict[str, list[str]]]) -> tuple[tuple[str, tuple[str, ...]], ...]:
        out = []
        for i, mapping in enumerate(value):
            for source, targets in mapping.items():
                for j, target in enumerate([source, *targets]):
                    if target not in groups:
                        where = f"router_settings.{name}[{i}].{source}" + (f"[{j - 1}]" if j else "")
                        problems.append(f"{where}: no model_list entry has model_name '{target}'")
                out.append((source, tuple(targets)))
        return tuple(out)

    keys: dict[str, Principal] = {}
    for i, key in enumerate(parsed.keys):
        if key.key in keys or key.key == parsed.general_settings.master_key:
            problems.append(f"keys[{i}].key: the same key is configured twice")
        for j, model in enumerate(key.models):
            if model not in groups:
                problems.append(f"keys[{i}].models[{j}]: no model_list entry has model_name '{model}'")
        keys[key.key] = Principal(
            name=key.name,
            team=key.team,
            user=key.user,
            models=frozenset(key.models) if key.models else None,
            budgets=tuple(key.budgets),
            rate_limit=RateLimit(rpm=key.rpm, tpm=key.tpm) if key.rpm is not None or key.tpm is not None else None,
        )

    if not groups and not problems:
        warnings.append("model_list: no models are configured; every request will get 404")

    check_policies(parsed.policies, groups, problems)
    server = parsed.server
    return RuntimeConfig(
        groups={name: ModelGroup(name, tuple(deps)) for name, deps in groups.items()},
        router=RouterConfig(
            strategy=router.routing_strategy,
            num_retries=router.num_retries,
            timeout=server.request_timeout or router.timeout,
            fallbacks=chains("fallbacks", router.fallbacks),
            context_window_fallbacks=chains("context_window_fallbacks", router.context_window_fallbacks),
            content_policy_fallbacks=chains("content_policy_fallbacks", router.content_policy_fallbacks),
            allowed_fails=router.allowed_fails,
            cooldown_time=router.cooldown_time,
            group_strategies=_group_strategies(parsed, groups, problems, warnings),
            retry_backoff=parsed.routing.retry_backoff,
            max_backoff=max(parsed.routing.max_backoff, parsed.routing.retry_backoff),
            min_retry_wait=router.retry_after,
            breakers_enabled=parsed.breakers.enabled,
            breaker_threshold=parsed.breakers.failure_threshold or router.allowed_fails,
            breaker_reset=parsed.breakers.reset_timeout or router.cooldown_time,
            cooldown_refresh=parsed.routing.cooldown_refresh,
        ),
        server=ServerConfig(
            host=server.host, port=server.port, workers=server.workers, max_body_bytes=server.max_body_bytes,
            access_log=server.access_log, shutdown_grace=server.shutdown_grace,
        ),
        master_key=parsed.general_settings.master_key,
        keys=keys,
        warnings=tuple(warnings),
        telemetry=_telemetry(parsed),
        store=StoreConfig(url=parsed.store.url, timeout=parsed.store.timeout),
        budgets=parsed.budgets,
        audit=parsed.audit,
        rate_limits=parsed.rate_limits,
        policies=parsed.policies,
        approvals=parsed.approvals,
    )


def _telemetry(parsed: ConfigFile) -> TelemetryConfig:
    section = parsed.telemetry
    return TelemetryConfig(
        tracing=section.tracing,
        metrics=section.metrics,
        prometheus=section.prometheus,
        service_name=section.service_name,
        sample_ratio=section.sample_ratio,
        capture_message_content=section.capture_message_content,
        metrics_export_interval=section.metrics_export_interval,
        resource_attributes=tuple(section.resource_attributes.items()),
        otlp_endpoint=section.otlp.endpoint,
        otlp_protocol=section.otlp.protocol,
        otlp_headers=tuple(section.otlp.headers.items()),
        otlp_timeout=section.otlp.timeout,
        otlp_tls=(section.otlp.certificate, section.otlp.client_certificate, section.otlp.client_key),
    )


_STRATEGIES_IMPLEMENTED = ("simple-shuffle", "latency-based-routing", "least-busy")


def _group_strategies(
    parsed: ConfigFile, groups: dict[str, list[Deployment]], problems: list[str], warnings: list[str]
) -> tuple[tuple[str, str], ...]:
    """Per-group strategies; LiteLLM's usage-based ones are accepted and served by simple-shuffle."""
    if parsed.router_settings.routing_strategy not in _STRATEGIES_IMPLEMENTED:
        warnings.append(
            f"router_settings.routing_strategy: '{parsed.router_settings.routing_strategy}' is not implemented"
            " by Lockgate; simple-shuffle is used"
        )
    out = []
    for group, strategy in parsed.routing.strategies.items():
        if group not in groups:
            problems.append(f"routing.strategies.{group}: no model_list entry has model_name '{group}'")
        if strategy not in _STRATEGIES_IMPLEMENTED:
            warnings.append(f"routing.strategies.{group}: '{strategy}' is not implemented; simple-shuffle is used")
        out.append((group, strategy))
    return tuple(out)


# litellm_params that Lockgate reads itself; the rest are handed to litellm for its providers.
_OWN_PARAMS = {
    "model",
    "api_base",
    "api_key",
    "rpm",
    "tpm",
    "weight",
    "timeout",
    "stream_timeout",
    "max_retries",
    "connect_timeout",
    "first_token_timeout",
    "idle_timeout",
}


def _deployment(entry: ModelEntry, index: int, default_timeout: float, problems: list[str]) -> Deployment | None:
    params = entry.litellm_params
    path = f"model_list[{index}].litellm_params"
    provider, name = split_model(params.model)
    if params.api_base is not None and not params.api_base.startswith(("http://", "https://")):
        problems.append(f"{path}.api_base: must start with http:// or https://")
        return None
    if provider == FAKE_PROVIDER:
        route, semconv, api_base, api_key, upstream = "fake", "fake", None, params.api_key, name
    elif provider in OPENAI_COMPATIBLE:
        compat = OPENAI_COMPATIBLE[provider]
        api_base = params.api_base or compat.default_api_base
        if api_base is None:
            problems.append(f"{path}.api_base: required for '{provider}/' models")
            return None
        api_key = params.api_key or (os.environ.get(compat.key_env) if compat.key_env else None)
        route, semconv, upstream = "passthrough", compat.semconv_name, name
    else:
        route, semconv, api_base, api_key, upstream = "litellm", provider, params.api_base, params.api_key, params.model

    dumped = params.model_dump(exclude_none=True)
    extra = tuple(sorted((k, v) for k, v in dumped.items() if k not in _OWN_PARAMS))
    info = entry.model_info
    return Deployment(
        id=info.id or f"{entry.model_name}#{index}",
        group=entry.model_name,
        route=route,  # type: ignore[arg-type]
        provider=semconv,
        upstream_model=upstream,
        api_base=api_base.rstrip("/") if api_base else None,
        api_key=api_key,
        weight=params.weight,
        rpm=params.rpm,
        tpm=params.tpm,
        timeouts=Timeouts(
            total=params.timeout or default_timeout,
            connect=params.connect_timeout,
            first_token=params.first_token_timeout or params.stream_timeout,
            idle=params.idle_timeout,
        ),
        max_retries=params.max_retries,
        max_input_tokens=info.max_input_tokens,
        max_output_tokens=info.max_output_tokens,
        input_cost_per_token=info.input_cost_per_token,
        output_cost_per_token=info.output_cost_per_token,
        extra_params=extra,
    )
