"""How the `telemetry:` section and the standard OTEL_* variables combine, and what is on by default."""

from __future__ import annotations

import re

import httpx
import pytest

from gateway.config import parse_config
from gateway.config.loader import ConfigError
from gateway.telemetry import Telemetry
from gateway.telemetry.settings import resolve
from gateway.telemetry.span_batches import DiscardedSpans
from gateway.testing.upstream import UpstreamServer
from tests.conftest import MASTER_KEY, GatewayFactory, openai_model


def settings(yaml_text: str = "", **environ: str):  # type: ignore[no-untyped-def]
    return resolve(parse_config(yaml_text).telemetry, environ)


def test_by_default_tracing_is_off_metrics_are_on_and_the_service_is_lockgate() -> None:
    s = settings()
    assert (s.tracing, s.metrics, s.prometheus, s.capture_content) == (False, True, True, False)
    assert s.service_name == "lockgate" and s.traces_endpoint is None and s.protocol == "http/protobuf"


def test_an_otlp_endpoint_in_the_environment_turns_tracing_on_with_per_signal_paths() -> None:
    s = settings(OTEL_EXPORTER_OTLP_ENDPOINT="http://collector:4318", OTEL_SERVICE_NAME="gw-eu")
    assert s.tracing and s.traces_endpoint == "http://collector:4318/v1/traces"
    assert s.metrics_endpoint == "http://collector:4318/v1/metrics" and s.service_name == "gw-eu"


def test_the_config_file_wins_over_the_environment_and_grpc_is_selectable() -> None:
    s = settings(
        "telemetry: {service_name: edge, otlp: {endpoint: 'http://c:4317', protocol: grpc}, tracing: true}\n",
        OTEL_EXPORTER_OTLP_ENDPOINT="http://other:4318", OTEL_SERVICE_NAME="env-name",
    )
    assert (s.service_name, s.protocol, s.traces_endpoint) == ("edge", "grpc", "http://c:4317")


def test_standard_switches_are_honoured() -> None:
    assert not settings(OTEL_EXPORTER_OTLP_ENDPOINT="http://c:4318", OTEL_SDK_DISABLED="true").tracing
    assert not settings(OTEL_EXPORTER_OTLP_ENDPOINT="http://c:4318", OTEL_TRACES_EXPORTER="none").tracing
    assert settings(OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="true").capture_content
    assert not settings("telemetry: {capture_message_content: false}\n",
                        OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="true").capture_content
    assert settings(OTEL_SEMCONV_STABILITY_OPT_IN="gen_ai_latest_experimental,http/dup").stability.old_http
    assert not settings(OTEL_SEMCONV_STABILITY_OPT_IN="http").stability.old_http
    assert settings(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://t:4318/custom").traces_endpoint == "http://t:4318/custom"


def test_telemetry_section_is_strict_and_errors_name_the_key_path() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("telemetry: {tracing: true, otlp: {endpont: 'http://c:4318'}}\n")
    assert any(p.startswith("telemetry.otlp.endpont: unknown key") and "endpoint" in p for p in caught.value.problems)
    with pytest.raises(ConfigError) as caught:
        parse_config("telemetry: {otlp: {endpoint: 'collector:4318', protocol: thrift}}\n")
    problems = "\n".join(caught.value.problems)
    assert "telemetry.otlp.endpoint:" in problems and "telemetry.otlp.protocol:" in problems


def test_collector_headers_are_secrets_kept_out_of_errors() -> None:
    config = parse_config("telemetry: {otlp: {headers: {x-honeycomb-team: hc-secret-value-123}}}\n")
    assert "hc-secret-value-123" in config.secrets()
    assert "hc-secret-value-123" not in repr(config.telemetry)


def test_with_tracing_off_no_tracer_exists_and_responses_still_carry_a_trace_id(
    gateway_factory: GatewayFactory, upstream: UpstreamServer
) -> None:
    config_text = "model_list:\n" + openai_model("gpt-4o", upstream) + f"general_settings: {{master_key: {MASTER_KEY}}}\n"
    assert Telemetry(parse_config(config_text), environ={}).recorder is None
    gateway = gateway_factory(config_text)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    auth = {"Authorization": f"Bearer {MASTER_KEY}"}
    fresh = httpx.post(f"{gateway.url}/v1/chat/completions", json=body, headers=auth)
    assert re.fullmatch(r"[0-9a-f]{32}", fresh.headers["x-lockgate-trace-id"])
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    joined = httpx.post(f"{gateway.url}/v1/chat/completions", json=body,
                        headers={**auth, "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    assert joined.headers["x-lockgate-trace-id"] == trace_id
    missing = httpx.get(f"{gateway.url}/nope")
    assert missing.status_code == 404 and "x-lockgate-trace-id" in missing.headers
    # Metrics work without tracing.
    metrics = httpx.get(f"{gateway.url}/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    assert 'lockgate_requests_total{gen_ai_request_model="gpt-4o",http_response_status_code="200"' in metrics.text


def test_metrics_false_removes_the_endpoint(gateway_factory: GatewayFactory, upstream: UpstreamServer) -> None:
    gateway = gateway_factory("model_list:\n" + openai_model("gpt-4o", upstream) + "telemetry: {metrics: false}\n")
    assert httpx.get(f"{gateway.url}/metrics").status_code == 404


def test_grpc_export_is_selectable_and_shuts_down_cleanly() -> None:
    config = parse_config("telemetry: {otlp: {endpoint: 'http://127.0.0.1:1', protocol: grpc, timeout: 1}}\n")
    telemetry = Telemetry(config, environ={})
    assert telemetry.recorder is not None
    assert "(grpc, spans written in " in telemetry.describe() and "http://127.0.0.1:1" in telemetry.describe()
    telemetry.shutdown()


def test_tracing_on_with_nowhere_to_send_builds_no_spans_and_still_answers_with_a_trace_id(
    gateway_factory: GatewayFactory, upstream: UpstreamServer
) -> None:
    config_text = ("model_list:\n" + openai_model("gpt-4o", upstream)
                   + f"general_settings: {{master_key: {MASTER_KEY}}}\ntelemetry: {{tracing: true}}\n")
    telemetry = Telemetry(parse_config(config_text), environ={})
    assert isinstance(telemetry.spans, DiscardedSpans) and "tracing on" in telemetry.describe()
    gateway = gateway_factory(config_text)
    reply = httpx.post(f"{gateway.url}/v1/chat/completions", headers={"Authorization": f"Bearer {MASTER_KEY}"},
                       json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
    assert reply.status_code == 200 and re.fullmatch(r"[0-9a-f]{32}", reply.headers["x-lockgate-trace-id"])


def test_the_startup_line_shows_the_collector_without_its_credentials() -> None:
    config = parse_config("telemetry: {metrics: false, otlp: {endpoint: 'https://ingest:tok3n@collector.example:4318'}}\n")
    telemetry = Telemetry(config, environ={})
    described = telemetry.describe()
    telemetry.shutdown()
    assert "https://collector.example:4318/v1/traces" in described and "tok3n" not in described


def test_traces_and_metrics_may_each_have_their_own_protocol_and_headers() -> None:
    # The OTLP exporter spec's per-signal variables: spans to a collector's gRPC port, metrics over HTTP.
    s = settings(OTEL_EXPORTER_OTLP_ENDPOINT="http://collector:4318", OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="grpc",
                 OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://collector:4317",
                 OTEL_EXPORTER_OTLP_HEADERS="x-team=a", OTEL_EXPORTER_OTLP_METRICS_HEADERS="x-team=metrics")
    assert (s.protocol, s.traces_endpoint, s.headers) == ("grpc", "http://collector:4317", (("x-team", "a"),))
    assert (s.metrics_protocol, s.metrics_endpoint) == ("http/protobuf", "http://collector:4318/v1/metrics")
    assert s.metrics_headers == (("x-team", "metrics"),)
    both = settings(OTEL_EXPORTER_OTLP_ENDPOINT="http://collector:4317", OTEL_EXPORTER_OTLP_PROTOCOL="grpc")
    assert (both.protocol, both.metrics_protocol, both.metrics_endpoint) == ("grpc", "grpc", "http://collector:4317")
    assert settings("telemetry: {otlp: {protocol: grpc}}\n", OTEL_EXPORTER_OTLP_METRICS_PROTOCOL="http/protobuf") \
        .metrics_protocol == "grpc"  # the config file wins
