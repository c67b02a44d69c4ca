"""End to end: `python -m gateway serve` as a real process exports OTLP/HTTP to a local receiver."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion

from gateway.testing.otlp_receiver import ReceiverServer
from gateway.testing.upstream import UpstreamServer
from tests.conftest import MASTER_KEY, UPSTREAM_KEY, openai_model

SERVER, CLIENT = 2, 3  # OTLP span kinds


@pytest.fixture
def receiver() -> Iterator[ReceiverServer]:
    server = ReceiverServer().start()
    yield server
    server.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_gateway(config: Path, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port), "--log-level", "warning"],
        env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=config.parent,
    )
    # Readiness is only observable by asking; bounded, and it stops as soon as the gateway answers.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"gateway exited: {process.stderr.read().decode() if process.stderr else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError("the gateway did not become ready")


def traced_chat(port: int, api_key: str = "unused", **params: Any) -> tuple[ChatCompletion, str]:
    """One chat through the gateway on `port` with the `openai` SDK: the reply and its trace id."""
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=api_key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        **{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], **params})
    return raw.parse(), raw.headers["x-lockgate-trace-id"]


def stop_gateway(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def test_spans_and_metrics_reach_an_otlp_http_receiver_from_a_real_gateway_process(
    tmp_path: Path, upstream: UpstreamServer, receiver: ReceiverServer
) -> None:
    config = tmp_path / "lockgate.yaml"
    config.write_text(
        "model_list:\n" + openai_model("gpt-4o", upstream)
        + f"general_settings: {{master_key: {MASTER_KEY}}}\n"
        + "telemetry: {metrics_export_interval: 0.5}\n"
    )
    port = free_port()
    process = start_gateway(config, port, {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_SERVICE_NAME": "", "OTEL_SDK_DISABLED": "",
    })
    try:
        reply, trace_id = traced_chat(port, MASTER_KEY, messages=[{"role": "user", "content": "hello"}],
                                      temperature=0.5, extra_headers={"x-lockgate-session-id": "sess-e2e"})
        got = receiver.receiver
        got.wait_for(lambda r: any(s.kind == SERVER and s.trace_id == trace_id for s in r.spans))
        got.wait_for(lambda r: "gen_ai.client.operation.duration" in r.metric_names)
    finally:
        stop_gateway(process)

    spans = [s for s in got.spans if s.trace_id == trace_id]
    (server,) = [s for s in spans if s.kind == SERVER]
    (call,) = [s for s in spans if s.kind == CLIENT]
    assert server.resource["service.name"] == "lockgate"
    assert server.name == "POST /v1/chat/completions" and server.attributes["session.id"] == "sess-e2e"
    assert call.parent_span_id == server.span_id and call.name == "chat gpt-4o-upstream"
    assert call.attributes["gen_ai.provider.name"] == "openai"
    assert call.attributes["gen_ai.response.id"] == reply.id
    assert call.attributes["gen_ai.request.temperature"] == 0.5
    assert call.attributes["server.port"] == upstream.port
    assert reply.usage is not None and call.attributes["gen_ai.usage.output_tokens"] == reply.usage.completion_tokens
    assert {"gen_ai.client.token.usage", "lockgate.requests"} <= got.metric_names
    # Decisions travel as events of the SERVER span (here: the spend recorded for the request).
    (settle,) = [attrs for name, attrs in server.events if name == "lockgate.budget.settle"]
    assert settle["tokens"] == reply.usage.total_tokens
    everything = repr([(s.attributes, s.events) for s in spans])
    assert UPSTREAM_KEY not in everything and MASTER_KEY not in everything


def serve_three_chats(tmp_path: Path, upstream: UpstreamServer, otlp: str) -> tuple[int, subprocess.Popen[bytes]]:
    """A gateway process with `telemetry.otlp` set to `otlp` (YAML flow mappings' inside), after it served
    three chats, none slowed or failed by where its spans go; its port and process."""
    config = tmp_path / "lockgate.yaml"
    config.write_text("model_list:\n" + openai_model("gpt-4o", upstream) + f"telemetry: {{otlp: {{{otlp}}}}}\n")
    port = free_port()
    process = start_gateway(config, port, {"OTEL_BSP_SCHEDULE_DELAY": "50"})
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        for _ in range(3):
            reply = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
            assert reply.choices[0].finish_reason == "stop"
    except BaseException:
        stop_gateway(process)
        raise
    return port, process


def test_a_dead_collector_costs_dropped_spans_not_failed_requests(tmp_path: Path, upstream: UpstreamServer) -> None:
    dead = free_port()  # nothing listens here
    port, process = serve_three_chats(tmp_path, upstream, f"endpoint: 'http://127.0.0.1:{dead}', timeout: 1")
    try:
        # The export thread gives up on the batch within its timeout; the count is visible on /metrics.
        failed = 0.0
        deadline = time.monotonic() + 20
        while failed == 0 and time.monotonic() < deadline:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            line = next(l for l in text.splitlines() if l.startswith("lockgate_telemetry_spans_total") and '"failed"' in l)
            failed = float(line.rsplit(" ", 1)[1])
            if failed == 0:
                time.sleep(0.1)
        assert failed > 0
    finally:
        stop_gateway(process)


def test_spans_still_queued_when_the_gateway_stops_reach_the_collector(
    tmp_path: Path, upstream: UpstreamServer, receiver: ReceiverServer
) -> None:
    config = tmp_path / "lockgate.yaml"
    config.write_text("model_list:\n" + openai_model("gpt-4o", upstream) + "telemetry: {metrics: false}\n")
    port = free_port()
    # A batch is due only after a minute: the request's spans are still queued when the stop comes.
    process = start_gateway(config, port, {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
                                           "OTEL_BSP_SCHEDULE_DELAY": "60000"})
    try:
        _, trace_id = traced_chat(port)
        assert not receiver.receiver.spans
    finally:
        stop_gateway(process)
    assert {s.kind for s in receiver.receiver.spans if s.trace_id == trace_id} == {SERVER, CLIENT}


def test_a_hung_collector_does_not_hold_up_a_stopping_gateway(tmp_path: Path, upstream: UpstreamServer) -> None:
    # A collector that takes connections and never answers (a stuck process, a full proxy): every
    # export waits for its timeout. The gateway's stop gives up on it after a few seconds, and says so.
    hole = socket.create_server(("127.0.0.1", 0))
    try:
        _, process = serve_three_chats(tmp_path, upstream, f"endpoint: 'http://127.0.0.1:{hole.getsockname()[1]}'")
        stop_gateway(process)  # 20 s, then killed: the OTLP retries alone used to take ~22 s
    finally:
        hole.close()
    assert process.stderr is not None
    log = process.stderr.read().decode()
    assert "spans could not be delivered at shutdown" in log, log
    assert "Traceback" not in log, log
