"""Fixtures for telemetry tests: real gateways whose spans go to an in-memory exporter we can wait on."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway.config import parse_config
from gateway.testing.server import GatewayServer


class SpanSink(InMemorySpanExporter):
    """The SDK's in-memory exporter, plus a wait for the request's SERVER span (ended last)."""

    def __init__(self) -> None:
        super().__init__()
        self._changed = threading.Condition()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = super().export(spans)
        with self._changed:
            self._changed.notify_all()
        return result

    def servers(self) -> list[ReadableSpan]:
        return [s for s in self.get_finished_spans() if s.kind is SpanKind.SERVER]

    def wait_servers(self, count: int = 1, timeout: float = 10.0) -> list[ReadableSpan]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.servers()) >= count, timeout):
                raise AssertionError(f"expected {count} SERVER spans, got {len(self.servers())}")
        return self.servers()

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        found = [
            s for s in self.get_finished_spans()
            if s.parent is not None and s.parent.span_id == parent.context.span_id
        ]
        return sorted(found, key=lambda s: s.start_time or 0)


TracedFactory = Callable[[str], tuple[GatewayServer, SpanSink]]


@pytest.fixture
def traced_gateway() -> Iterator[TracedFactory]:
    """Start real gateways from YAML whose spans land in a `SpanSink`; stopped when the test ends."""
    started: list[GatewayServer] = []

    def start(yaml_text: str) -> tuple[GatewayServer, SpanSink]:
        sink = SpanSink()
        server = GatewayServer(parse_config(yaml_text), span_exporter=sink).start()
        started.append(server)
        return server, sink

    yield start
    for server in started:
        server.stop()
