"""Budget decisions reach the trace: reserve, settle, alert and refusal are span events with amounts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from gateway.config import parse_config
from gateway.testing.server import GatewayServer
from gateway.testing.upstream import UpstreamServer
from tests.governance.test_budgets import KEY, PER_CALL, ask, budget_yaml
from tests.telemetry.conftest import SpanSink


@pytest.fixture
def traced(upstream: UpstreamServer, tmp_path: Path) -> Iterator[tuple[GatewayServer, SpanSink]]:
    sink = SpanSink()
    yaml = budget_yaml(upstream, f"sqlite:///{tmp_path / 'db'}", "{global: [{limit_usd: 0.001, period: daily}]}")
    server = GatewayServer(parse_config(yaml), span_exporter=sink).start()
    yield server, sink
    server.stop()


def events(span: object) -> dict[str, dict[str, object]]:
    return {e.name: dict(e.attributes or {}) for e in span.events}  # type: ignore[attr-defined]


def test_reserve_settle_alert_and_refusal_are_span_events(traced: tuple[GatewayServer, SpanSink]) -> None:
    server, sink = traced
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0)
    ask(client)
    first = events(sink.wait_servers(1)[0])
    assert first["lockgate.budget.reserve"]["amount_usd_micros"] == PER_CALL
    assert first["lockgate.budget.reserve"]["scopes"] == "global:global"
    assert first["lockgate.budget.settle"]["charged_usd_micros"] == PER_CALL
    assert first["lockgate.budget.alert"]["threshold"] == 0.5

    ask(client)
    with pytest.raises(openai.RateLimitError):
        ask(client)
    refused = events(sink.wait_servers(3)[-1])
    assert refused["lockgate.budget.refused"]["scope"] == "global:global"
    assert refused["lockgate.budget.refused"]["spent"] == 2 * PER_CALL
    assert refused["lockgate.budget.refused"]["limit"] == 1000
