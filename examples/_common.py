"""Shared bits of the examples: where the gateway is, and printing spans when the agent has no exporter.

Run `lockgate demo` first; the examples then work offline against its fake models.
"""

from __future__ import annotations

import os

from lockgate_sdk import Gateway

BASE_URL = os.environ.get("LOCKGATE_BASE_URL", "http://127.0.0.1:4000")
API_KEY = os.environ.get("LOCKGATE_API_KEY", "lockgate-demo-key")
MODEL = os.environ.get("LOCKGATE_MODEL", "gpt-4o-mini")


def demo_gateway(agent_name: str) -> Gateway:
    """The SDK pointed at `lockgate demo`; spans print to the console if opentelemetry-sdk is installed."""
    provider = None
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

        if os.environ.get("LOCKGATE_EXAMPLE_PRINT_SPANS"):
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    except ImportError:
        pass
    return Gateway(BASE_URL, API_KEY, agent_name=agent_name, tracer_provider=provider)
