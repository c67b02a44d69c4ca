"""The SDK's one door to OpenTelemetry: the tracer, trace-context injection, the content switch.

Only `opentelemetry-api` is required. When the agent has configured an OTel SDK, spans go wherever
it exports them; when it has not, the API's no-op tracer makes every span free (and `export.py` can
install a provider that sends them to the gateway).
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

from opentelemetry import propagate, trace

from lockgate_sdk.semconv import CAPTURE_CONTENT_ENV

SCOPE = "lockgate_sdk"
VERSION = "0.1.0"


def get_tracer(provider: trace.TracerProvider | None = None) -> trace.Tracer:
    return trace.get_tracer(SCOPE, VERSION, tracer_provider=provider)


def inject(headers: MutableMapping[str, str]) -> None:
    """Write the current context (`traceparent`, `tracestate`, `baggage`) into outgoing headers.

    Called per request, at send time, so each LLM call carries the span that is current *then*
    (a tool span, the agent span), not the one current when the client was built.
    """
    propagate.inject(headers)


def capture_content_from_env() -> bool:
    return os.environ.get(CAPTURE_CONTENT_ENV, "").strip().lower() in ("1", "true", "yes", "on")
