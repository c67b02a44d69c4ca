"""SDK fixtures: a real gateway on the fake provider, an in-memory span exporter, SDK gateways."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from lockgate_sdk import Gateway
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.testing.server import GatewayServer
from tests.conftest import GatewayFactory

AGENT_KEY = "sk-agent-key-0123456789abcdef"
OTHER_KEY = "sk-other-tenant-key-0123456789"

FAKE_CONFIG = f"""
model_list:
  - model_name: gpt-4o-mini
    litellm_params: {{model: fake/gpt-4o-mini}}
keys:
  - {{name: agent, key: {AGENT_KEY}}}
  - {{name: other-tenant, key: {OTHER_KEY}}}
"""


def fake_config(store_url: str) -> str:
    """The fake model and an agent key, with durable state in `store_url`."""
    return FAKE_CONFIG + f"store: {store_url}\n"


class Spans:
    """A tracer provider whose finished spans a test can read."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def finished(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, prefix: str) -> list[ReadableSpan]:
        return [s for s in self.finished() if s.name.startswith(prefix)]


@pytest.fixture
def spans() -> Iterator[Spans]:
    recorded = Spans()
    yield recorded
    recorded.provider.shutdown()


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/lockgate.db"


@pytest.fixture
def fake_gateway(gateway_factory: GatewayFactory, store_url: str) -> GatewayServer:
    return gateway_factory(fake_config(store_url))


SdkFactory = Callable[..., Gateway]


@pytest.fixture
def sdk(fake_gateway: GatewayServer, spans: Spans) -> Iterator[SdkFactory]:
    """SDK `Gateway`s on the fake gateway, tracing into `spans`; closed at the end."""
    made: list[Gateway] = []

    def make(**options: object) -> Gateway:
        options.setdefault("tracer_provider", spans.provider)
        options.setdefault("api_key", AGENT_KEY)
        gateway = Gateway(fake_gateway.url, **options)  # type: ignore[arg-type]
        made.append(gateway)
        return gateway

    yield make
    for gateway in made:
        gateway.close()
