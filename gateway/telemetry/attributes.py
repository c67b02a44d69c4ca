"""Attribute values for spans and metrics, built once per deployment and read cheaply per request.

Everything a deployment contributes (provider, upstream model, `server.address`/`server.port` of the
real upstream, ids) is computed when the app is built; per attempt only what the response said is
added. Nothing here reads a key or a header: secrets cannot reach a span through this module.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from gateway.config.runtime import Deployment, RuntimeConfig
from gateway.context import Attempt
from gateway.errors import UpstreamFailure
from gateway.telemetry import semconv as sc

Attrs = dict[str, Any]
OTHER_MODEL = "_other"


class DeploymentAttributes:
    def __init__(self, config: RuntimeConfig) -> None:
        self._groups = frozenset(config.groups)
        self._span: dict[str, Attrs] = {}
        self._server: dict[str, tuple[str, int] | None] = {}
        for group in config.groups.values():
            for d in group.deployments:
                server = _server(d.api_base)
                self._server[d.id] = server
                attrs: Attrs = {
                    sc.GEN_AI_PROVIDER_NAME: d.provider,
                    sc.GEN_AI_REQUEST_MODEL: d.upstream_model,
                    sc.LOCKGATE_DEPLOYMENT: d.id,
                    sc.LOCKGATE_MODEL_GROUP: d.group,
                }
                if server is not None:
                    attrs[sc.SERVER_ADDRESS], attrs[sc.SERVER_PORT] = server
                self._span[d.id] = attrs

    def deployment_ids(self) -> list[str]:
        return list(self._span)

    def server_of(self, deployment_id: str) -> str | None:
        """`host:port` of the deployment's upstream (None: the provider's default endpoint)."""
        server = self._server.get(deployment_id)
        return None if server is None else f"{server[0]}:{server[1]}"

    def model_label(self, model: str) -> str:
        """The client's model as a metric label: only configured groups, so labels stay bounded."""
        return model if model in self._groups else OTHER_MODEL

    def span_group(self, deployment: Deployment) -> Attrs:
        """The deployment's fixed span attributes: the same dict for every span (never to be changed), so
        span writers can encode it once."""
        found = self._span.get(deployment.id)
        if found is None:  # not in the config (cannot happen today): made once, kept like the others
            found = self._span[deployment.id] = {sc.LOCKGATE_DEPLOYMENT: deployment.id}
        return found

    def metric_attrs(self, d: Deployment, operation: str, err: str | None, response_model: str | None) -> Attrs:
        attrs: Attrs = {
            sc.GEN_AI_OPERATION_NAME: operation,
            sc.GEN_AI_PROVIDER_NAME: d.provider,
            sc.GEN_AI_REQUEST_MODEL: d.upstream_model,
        }
        server = self._server.get(d.id)
        if server is not None:
            attrs[sc.SERVER_ADDRESS], attrs[sc.SERVER_PORT] = server
        if response_model:
            attrs[sc.GEN_AI_RESPONSE_MODEL] = response_model
        if err:
            attrs[sc.ERROR_TYPE] = err
        return attrs


def _server(api_base: str | None) -> tuple[str, int] | None:
    if not api_base:
        return None
    parts = urlsplit(api_base)
    if not parts.hostname:
        return None
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def error_type(failure: UpstreamFailure) -> str:
    """`error.type`: the upstream's status code when it answered, otherwise what went wrong."""
    if failure.kind == "status" and failure.status is not None:
        return str(failure.status)
    return failure.kind


def time_to_first_chunk(attempt: Attempt, stream: bool) -> float | None:
    """The provider's measurement, else (streams) the router's: an opened stream's attempt lasts until
    its first event arrives, so its recorded duration is the time to the first chunk."""
    summary = attempt.summary
    if summary is None:
        return None
    if summary.time_to_first_chunk is not None:
        return summary.time_to_first_chunk
    return attempt.duration if stream else None


def attempt_cost(attempt: Attempt) -> float | None:
    """USD for one attempt, when the deployment's `model_info` has prices and usage is known."""
    d = attempt.deployment
    usage = attempt.summary.usage if attempt.summary else None
    if usage is None or (d.input_cost_per_token is None and d.output_cost_per_token is None):
        return None
    return usage.input_tokens * (d.input_cost_per_token or 0.0) + usage.output_tokens * (
        d.output_cost_per_token or 0.0
    )


# Every body key `request_params` reads: a finished request's record keeps only these of its body.
REQUEST_PARAM_KEYS = frozenset(
    [key for key, _ in sc.CHAT_NUMERIC_PARAMS] + ["stop", "n", "response_format", "encoding_format", "dimensions"]
)


_NUMERIC_PARAMS = dict(sc.CHAT_NUMERIC_PARAMS)


def request_params(operation: str, body: dict[str, Any], attrs: Attrs) -> None:
    """Add the `gen_ai.request.*` parameters the client sent."""
    if operation == "embeddings":
        fmt = body.get("encoding_format")
        if isinstance(fmt, str):
            attrs[sc.GEN_AI_REQUEST_ENCODING_FORMATS] = (fmt,)
        dims = body.get("dimensions")
        if isinstance(dims, int):
            attrs[sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] = dims
        return
    # The body's keys, not every parameter's: a request sends a few of them (the record keeps only
    # these keys), and this runs for every traced request.
    for key, value in body.items():
        name = _NUMERIC_PARAMS.get(key)
        if name is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
            if key == "max_tokens":
                attrs.setdefault(name, value)  # max_completion_tokens, its newer name, wins
            else:
                attrs[name] = value
    stop = body.get("stop")
    if isinstance(stop, str):
        attrs[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = (stop,)
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        attrs[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = tuple(stop)
    n = body.get("n")
    if isinstance(n, int) and n != 1:
        attrs[sc.GEN_AI_REQUEST_CHOICE_COUNT] = n
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        attrs[sc.GEN_AI_OUTPUT_TYPE] = "json"
