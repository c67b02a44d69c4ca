"""A small OTLP/HTTP receiver on loopback: decodes what a gateway exports, for tests and the benchmark.

(`Receiver.record_traces` and `record_metrics` also serve the OTLP/gRPC receiver, `otlp_grpc_receiver`,
so both transports decode alike.)

Accepts `POST /v1/traces` and `POST /v1/metrics` (protobuf, optionally gzip) and keeps the spans as
plain dicts and the metric names seen, so a test can wait for a span and read its attributes. Run
standalone with `python -m gateway.testing.otlp_receiver --port 4318` (it only counts, then).
"""

from __future__ import annotations

import argparse
import gzip
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from gateway.testing.loopback import LoopbackServer

PROTOBUF = "application/x-protobuf"


@dataclass(slots=True)
class ReceivedSpan:
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    status_code: int = 0


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(v) for v in value.array_value.values)
    if kind == "kvlist_value":
        return _attrs(value.kvlist_value.values)
    return getattr(value, kind) if kind else None


def _attrs(pairs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs if isinstance(kv, KeyValue)}


class Receiver:
    def __init__(self, keep: bool = True) -> None:
        self.keep = keep
        self.spans: list[ReceivedSpan] = []
        self.span_count = 0
        self.metric_names: set[str] = set()
        self.changed = threading.Condition()

    @staticmethod
    async def _body(request: web.Request) -> bytes:
        body = await request.read()
        return gzip.decompress(body) if request.headers.get("Content-Encoding") == "gzip" else body

    async def traces(self, request: web.Request) -> web.Response:
        self.record_traces(ExportTraceServiceRequest.FromString(await self._body(request)))
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(), content_type=PROTOBUF)

    def record_traces(self, message: ExportTraceServiceRequest) -> None:
        """Keep (or count) the spans of one export, whichever transport brought it."""
        received: list[ReceivedSpan | None] = []
        for resource_spans in message.resource_spans:
            resource = _attrs(resource_spans.resource.attributes) if self.keep else {}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    if not self.keep:
                        received.append(None)
                        continue
                    received.append(ReceivedSpan(
                        name=span.name, kind=span.kind, trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(), attributes=_attrs(span.attributes),
                        resource=resource, events=[(e.name, _attrs(e.attributes)) for e in span.events],
                        status_code=span.status.code,
                    ))
        with self.changed:
            self.span_count += len(received)
            if self.keep:
                self.spans.extend(s for s in received if s is not None)
            self.changed.notify_all()

    async def metrics(self, request: web.Request) -> web.Response:
        self.record_metrics(ExportMetricsServiceRequest.FromString(await self._body(request)))
        return web.Response(body=ExportMetricsServiceResponse().SerializeToString(), content_type=PROTOBUF)

    def record_metrics(self, message: ExportMetricsServiceRequest) -> None:
        """Keep the metric names of one export, whichever transport brought it."""
        names = {m.name for rm in message.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
        with self.changed:
            self.metric_names |= names
            self.changed.notify_all()

    def wait_for(self, predicate: Any, timeout: float = 20.0) -> None:
        with self.changed:
            if not self.changed.wait_for(lambda: predicate(self), timeout):
                raise AssertionError("the OTLP receiver did not get what was expected in time")

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/traces", self.traces)
        app.router.add_post("/v1/metrics", self.metrics)
        return app


class ReceiverServer(LoopbackServer):
    """Runs a `Receiver` on 127.0.0.1 in a thread with its own event loop."""

    def __init__(self, receiver: Receiver | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.receiver = receiver or Receiver()
        super().__init__(self.receiver.app(), tls)
        self._scheme = "https" if tls is not None else "http"

    @property
    def url(self) -> str:
        return f"{self._scheme}://127.0.0.1:{self.port}"


def main() -> None:
    parser = argparse.ArgumentParser(description="Loopback OTLP/HTTP receiver (counts spans).")
    parser.add_argument("--port", type=int, default=4318)
    args = parser.parse_args()
    web.run_app(Receiver(keep=False).app(), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
