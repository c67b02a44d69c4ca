"""Sending the agent's spans to the gateway, for agents that have no OpenTelemetry pipeline of their own.

Needs the `export` extra (`opentelemetry-sdk` and the OTLP/HTTP exporter). The spans go, batched and
off the agent's path, to the gateway's `POST /v1/traces`, which forwards them to its own collector:
the gateway's URL and key are all the agent needs to know.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lockgate_sdk.gateway import Gateway


def gateway_tracer_provider(gateway: Gateway, service_name: str | None = None) -> Any:
    """A TracerProvider that exports to the gateway (not installed globally: pass it where needed)."""
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise ImportError("span export needs: pip install 'lockgate-sdk[export]'") from exc
    headers = {"authorization": f"Bearer {gateway.api_key}"} if gateway.api_key else {}
    provider = TracerProvider(resource=Resource.create({"service.name": service_name or gateway.agent_name}))
    exporter = OTLPSpanExporter(endpoint=f"{gateway.root_url}/v1/traces", headers=headers)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider
