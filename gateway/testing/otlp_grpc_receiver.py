"""A small OTLP/gRPC receiver on loopback (the collector's port 4317 role), for tests and the benchmark.

Serves the trace and metrics services; spans go to a `Receiver` (the OTLP/HTTP receiver's, so both
transports decode alike), metric names too. Run standalone with
`python -m gateway.testing.otlp_grpc_receiver --port 4317` (it only counts, then).
"""

from __future__ import annotations

import argparse
import threading
from collections import deque
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from gateway.testing.otlp_receiver import Receiver


class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    """The trace service. A test can make it fail (`faults`: status codes answered first, in order),
    hang (`hold`: calls wait until it is set) and read the metadata each call carried."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.faults: deque[grpc.StatusCode] = deque()
        self.hold: threading.Event | None = None
        self.metadata: list[dict[str, str]] = []
        self.calls = 0
        self.called = threading.Event()  # set at the first call

    def Export(self, request: ExportTraceServiceRequest, context: Any) -> ExportTraceServiceResponse:
        self.calls += 1
        self.called.set()
        self.metadata.append({key: value for key, value in context.invocation_metadata()})
        if self.hold is not None:
            self.hold.wait(30)
        if self.faults:
            context.abort(self.faults.popleft(), "a fault the test asked for")
        self.receiver.record_traces(request)
        return ExportTraceServiceResponse()


class _MetricsService(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def Export(self, request: ExportMetricsServiceRequest, context: Any) -> ExportMetricsServiceResponse:
        self.receiver.record_metrics(request)
        return ExportMetricsServiceResponse()


@contextmanager
def grpc_trace_service(
    credentials: grpc.ServerCredentials | None = None, receiver: Receiver | None = None, port: int = 0,
    service: TraceService | None = None,
) -> Iterator[tuple[Receiver, int]]:
    """An OTLP/gRPC receiver on 127.0.0.1 (TLS with `credentials`): its `Receiver` and port."""
    service = service or TraceService(receiver or Receiver())
    receiver = service.receiver
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(service, server)  # type: ignore[no-untyped-call]
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_MetricsService(receiver), server)  # type: ignore[no-untyped-call]
    address = f"127.0.0.1:{port}"
    bound = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    server.start()
    try:
        yield receiver, bound
    finally:
        server.stop(grace=None)


def main() -> None:
    parser = argparse.ArgumentParser(description="Loopback OTLP/gRPC receiver (counts spans).")
    parser.add_argument("--port", type=int, default=4317)
    args = parser.parse_args()
    with grpc_trace_service(receiver=Receiver(keep=False), port=args.port):
        try:
            threading.Event().wait()  # until the process is stopped
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
