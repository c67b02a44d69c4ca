"""CPU cost of the telemetry middleware per request, isolated from HTTP and the upstream.

Drives `TelemetryMiddleware` around a tiny ASGI app that records one successful attempt (as the
router does), with each telemetry configuration, and prints CPU microseconds per request (best of 5
runs, process time, so other load on the machine matters less). Compare with the gateway's whole
CPU cost per request from bench/telemetry_overhead.py.

    python bench/telemetry_middleware_cost.py
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from gateway.config import parse_config
from gateway.context import SCOPE_KEY, ApiRequest, Attempt
from gateway.providers.base import Summary, Usage
from gateway.telemetry import Telemetry, TelemetryMiddleware
from gateway.telemetry.otlp_encode import encode_spans

CONFIG = """
model_list:
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o, api_base: 'http://127.0.0.1:9/v1', api_key: sk-bench-0123456789}
"""
N = 2000


class EncodingExporter(SpanExporter):
    """Encodes spans to OTLP protobuf in batches of 512, as the batch processor and HTTP exporter do,
    without the network."""

    def __init__(self) -> None:
        self._cache: dict[tuple[Any, ...], bytes] = {}
        self._batch: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self._batch.extend(spans)
        if len(self._batch) >= 512:
            encode_spans(self._batch, self._cache)
            self._batch.clear()
        return SpanExportResult.SUCCESS


def build(yaml_extra: str, exporter: SpanExporter | None) -> TelemetryMiddleware:
    config = parse_config(CONFIG + yaml_extra)
    deployment = config.groups["gpt-4o"].deployments[0]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        request = ApiRequest(
            request_id="req_1", operation="chat", headers={}, raw=b"", model="gpt-4o",
            body={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.2},
        )
        scope["state"][SCOPE_KEY] = request
        request.attempts.append(Attempt(deployment, time.time(), 0.01, None, Summary(
            response_id="chatcmpl-1", response_model="gpt-4o", finish_reasons=["stop"], usage=Usage(12, 7))))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return TelemetryMiddleware(app, Telemetry(config, environ={}, span_exporter=exporter))


async def drive(middleware: Any) -> float:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        return None

    headers = [(b"content-type", b"application/json"), (b"authorization", b"Bearer x")]
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        for _ in range(N):
            scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": headers,
                     "state": {"request_id": "req_1"}}
            await middleware(scope, receive, send)
        best = min(best, (time.process_time() - started) / N)
    return best * 1e6


async def main() -> None:
    baseline = await drive(build("telemetry: {metrics: false}\n", None))
    print(f"telemetry off (header only)      {baseline:7.1f} us/request")
    for name, extra, exporter in (
        ("metrics (default)", "", None),
        ("tracing+metrics, encode spans", "", EncodingExporter()),
        ("tracing 10% + metrics", "telemetry: {sample_ratio: 0.1}\n", EncodingExporter()),
    ):
        cost = await drive(build(extra, exporter))
        print(f"{name:32s} {cost:7.1f} us/request  (+{cost - baseline:.1f})")


def encoders() -> None:
    """Lockgate's OTLP encoder against the SDK's, on the spans of 256 requests (the reason it exists)."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    global N
    memory, N = InMemorySpanExporter(), 256
    asyncio.run(drive(build("", memory)))
    spans = list(memory.get_finished_spans())[:512]
    cache: dict[tuple[Any, ...], bytes] = {}
    for name, encode in (("lean", lambda: encode_spans(spans, cache)),
                         ("sdk", lambda: sdk_encode(spans).SerializeToString())):
        best = float("inf")
        for _ in range(5):
            started = time.process_time()
            encode()
            best = min(best, time.process_time() - started)
        print(f"OTLP encoding, {name:4s} encoder     {best / len(spans) * 1e6:7.1f} us/span")


if __name__ == "__main__":
    asyncio.run(main())
    encoders()
