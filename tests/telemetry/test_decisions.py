"""Any decision a stage records becomes a span event and a metric, with no telemetry code per decision.

Retries, breakers, budgets and policies record `request.decide(name, **attrs)` as values; these tests
drive the real telemetry component with such a request, as those stages will.
"""

from __future__ import annotations

import time

from gateway.config import parse_config
from gateway.context import ApiRequest, Attempt
from gateway.errors import UpstreamFailure
from gateway.providers.base import Summary, Usage
from gateway.telemetry import Telemetry
from gateway.telemetry.spans import FinishedRequest, RequestRecord, ServerSpan
from tests.telemetry.conftest import SpanSink

CONFIG = """
model_list:
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o, api_base: 'https://api.example.com/v1', api_key: sk-secret-abcdef0123456789}
    model_info: {id: gpt-4o-a, input_cost_per_token: 0.000002, output_cost_per_token: 0.00001}
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o, api_base: 'http://10.0.0.7:8000/v1', api_key: sk-other-abcdef0123456789}
    model_info: {id: gpt-4o-b}
"""


def make_request(config_text: str = CONFIG) -> tuple[Telemetry, SpanSink, ApiRequest]:
    config = parse_config(config_text)
    sink = SpanSink()
    telemetry = Telemetry(config, environ={}, span_exporter=sink)
    request = ApiRequest(
        request_id="req_1", operation="chat", headers={}, body={"model": "gpt-4o", "messages": []}, raw=b"",
        model="gpt-4o",
    )
    a, b = config.groups["gpt-4o"].deployments
    t0 = time.time()
    request.attempts.append(Attempt(a, t0, 0.05, UpstreamFailure("status", "upstream said no", status=503)))
    request.decide("lockgate.retry", deployment="gpt-4o-a", wait_s=0.25, reason="503 from upstream")
    request.decide("lockgate.breaker.opened", deployment="gpt-4o-a", failures=5)
    request.decide("lockgate.budget.reserve", amount_usd=0.01, note="key sk-secret-abcdef0123456789 leaked?")
    summary = Summary(response_id="chatcmpl-1", response_model="gpt-4o-2024", finish_reasons=["stop"],
                      usage=Usage(input_tokens=100, output_tokens=20, cached_tokens=40, reasoning_tokens=5))
    request.attempts.append(Attempt(b, t0 + 0.3, 0.1, None, summary))
    return telemetry, sink, request


def finish(telemetry: Telemetry, request: ApiRequest) -> None:
    """What the middleware does when a request ends: record its values under a SERVER span, write it."""
    recorder = telemetry.recorder
    assert recorder is not None
    context, parent = recorder.start(None, "POST")
    server = ServerSpan(context, parent, "POST /v1/chat/completions", time.time_ns(), {})
    assert telemetry.spans is not None
    telemetry.spans.write(FinishedRequest(server, RequestRecord.of(request, False), time.time_ns(), None, None))


def test_every_decision_is_an_event_on_the_server_span_with_its_attributes_and_time() -> None:
    telemetry, sink, request = make_request()
    finish(telemetry, request)

    (span,) = sink.servers()
    events = {e.name: e for e in span.events}
    assert list(events) == ["lockgate.retry", "lockgate.breaker.opened", "lockgate.budget.reserve"]
    retry = events["lockgate.retry"]
    assert dict(retry.attributes) == {"deployment": "gpt-4o-a", "wait_s": 0.25, "reason": "503 from upstream"}
    assert retry.timestamp == int(request.decisions[0].at * 1e9)
    # A secret in a decision's text is scrubbed before it reaches the span.
    assert "sk-secret" not in events["lockgate.budget.reserve"].attributes["note"]


def test_attempt_spans_carry_usage_cache_reasoning_cost_and_the_real_upstream_address() -> None:
    telemetry, sink, request = make_request()
    finish(telemetry, request)

    (span,) = sink.servers()
    failed, served = sink.children(span)
    assert failed.attributes["server.address"] == "api.example.com" and failed.attributes["server.port"] == 443
    assert failed.attributes["error.type"] == "503" and failed.status.description == "upstream said no"
    assert (failed.end_time - failed.start_time) == int(0.05 * 1e9)
    assert served.attributes["server.address"] == "10.0.0.7" and served.attributes["server.port"] == 8000
    assert served.attributes["gen_ai.usage.cache_read.input_tokens"] == 40
    assert served.attributes["gen_ai.usage.reasoning.output_tokens"] == 5
    assert "lockgate.cost.usd" not in served.attributes  # gpt-4o-b has no prices configured
    assert span.attributes["lockgate.deployment.id"] == "gpt-4o-b"


def test_cost_is_an_attribute_when_the_deployment_has_prices() -> None:
    telemetry, sink, request = make_request()
    request.attempts.pop()
    a = request.attempts[0]
    a.failure, a.summary = None, Summary(usage=Usage(input_tokens=1000, output_tokens=100))
    finish(telemetry, request)

    (span,) = sink.servers()
    assert abs(span.attributes["lockgate.cost.usd"] - (1000 * 0.000002 + 100 * 0.00001)) < 1e-12


def test_decisions_and_breaker_state_reach_the_prometheus_endpoint() -> None:
    telemetry, _, request = make_request()
    assert telemetry.metrics is not None and telemetry.prometheus is not None
    telemetry.metrics.record(request, 200, 0.5, "/v1/chat/completions")
    text = telemetry.prometheus.render().decode()

    assert 'lockgate_decisions_total{lockgate_decision="lockgate.retry"' in text
    assert 'lockgate_decisions_total{lockgate_decision="lockgate.budget.reserve"' in text
    assert 'lockgate_breaker_state{lockgate_deployment_id="gpt-4o-a"' in text
    breaker = next(line for line in text.splitlines() if line.startswith("lockgate_breaker_state{"))
    assert breaker.endswith(" 2.0")
    assert 'lockgate_retries_total{lockgate_model_group="gpt-4o"' in text


def test_token_usage_ttfc_and_cost_metrics_use_the_conventions_buckets() -> None:
    telemetry, _, request = make_request()
    request.attempts.pop()
    a = request.attempts[0]
    a.failure, a.summary = None, Summary(usage=Usage(input_tokens=1000, output_tokens=100), time_to_first_chunk=0.3)
    assert telemetry.metrics is not None and telemetry.prometheus is not None
    telemetry.metrics.record(request, 200, 0.5, "/v1/chat/completions")
    lines = telemetry.prometheus.render().decode().splitlines()

    def series(prefix: str, *labels: str) -> list[str]:
        return [line for line in lines if line.startswith(prefix) and all(label in line for label in labels)]

    token_buckets = series("gen_ai_client_token_usage_bucket", 'gen_ai_token_type="input"')
    assert [b.split('le="')[1].split('"')[0] for b in token_buckets][:3] == ["1.0", "4.0", "16.0"]
    assert len(token_buckets) == 15  # 14 boundaries and +Inf
    # 1000 input tokens: above the 256 boundary, within 1024 (buckets are cumulative in Prometheus).
    counts = {b.split('le="')[1].split('"')[0]: float(b.rsplit(" ", 1)[1]) for b in token_buckets}
    assert counts["256.0"] == 0.0 and counts["1024.0"] == 1.0 and counts["+Inf"] == 1.0
    (total,) = series("gen_ai_client_token_usage_sum", 'gen_ai_token_type="input"')
    assert total.endswith(" 1000.0")
    (ttfc,) = series("gen_ai_client_operation_time_to_first_chunk_seconds_count", 'server_address="api.example.com"')
    assert ttfc.endswith(" 1.0")
    (cost,) = series("lockgate_cost_total", 'lockgate_deployment_id="gpt-4o-a"')
    assert abs(float(cost.rsplit(" ", 1)[1]) - (1000 * 0.000002 + 100 * 0.00001)) < 1e-9
