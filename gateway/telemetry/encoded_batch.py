"""The batch of spans on their way to an OTLP collector, written straight into protobuf, and its retries.

Spans are written into protobuf as they are built (the batch's `SpanBytes` writer), in small
chunks, and sent together when the batch is full or due (`send`), so a finished request's values
are read soon after it ends while one export still carries hundreds of spans. The same bytes go out
over either OTLP transport (`otlp_http.HttpTransport`, `otlp_grpc.GrpcTransport`): an
ExportTraceServiceRequest is the body of the HTTP POST and the message of the gRPC call.

What the OTLP spec calls retryable is retried with exponential backoff within the configured
timeout; then the batch is counted failed, never retried forever. A stopping gateway cuts the
retries short at its deadline (`finish_by`). Runs only on the export thread.
"""

from __future__ import annotations

import logging
import threading
import time
from enum import Enum
from typing import Protocol

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from gateway.telemetry.otlp_encode import SpanBytes, wrap_span_messages
from gateway.telemetry.span_export import ExportCounts

log = logging.getLogger("lockgate.telemetry")


class Outcome(Enum):
    DELIVERED = "delivered"
    RETRY = "retry"  # the collector could not be reached, or asked to try again later
    REFUSED = "refused"  # it will not take this batch: no retry


class Transport(Protocol):
    def export(self, body: bytes, timeout: float) -> tuple[Outcome, str]:
        """Send one serialized ExportTraceServiceRequest; what happened, and (refused) what the collector said."""

    def close(self) -> None:
        """Close the connection; an export waiting on the collector ends now. Called from another thread."""


class EncodedSpanBatch:
    """The batch being written for the collector (a `span_export.SpanBatch`): spans go straight into protobuf."""

    def __init__(
        self, transport: Transport, timeout: float, counts: ExportCounts, resource: Resource,
        scope: InstrumentationScope,
    ) -> None:
        self._transport = transport
        self._timeout = timeout
        self._counts = counts
        self._resource = resource
        self._scope = scope
        self._writer = SpanBytes()
        self._sent = 0  # writer.count at the last send
        self._closed = False
        self._stopping = threading.Event()  # ends a wait to retry: the gateway is stopping
        self._finish_by = float("inf")  # no send lasts past this (time.monotonic()) once the gateway stops

    @property
    def writer(self) -> SpanBytes:
        return self._writer

    @property
    def pending(self) -> int:
        return self._writer.count - self._sent

    def mark(self) -> tuple[int, int]:
        return len(self._writer.parts), self._writer.count

    def rollback(self, mark: tuple[int, int]) -> None:
        del self._writer.parts[mark[0]:]
        self._writer.count = mark[1]

    def send(self) -> None:
        """Export what was written (with retries), and count it exported or failed."""
        count, parts = self.pending, self._writer.parts
        if not count:
            return
        self._writer.parts, self._sent = [], self._writer.count
        try:
            body = wrap_span_messages(self._resource, self._scope, parts, self._writer.cache)
            sent = self._export_with_retries(body, count)
        except Exception:  # a bug here must not kill the export thread
            if not self._closed:  # else: the connection was closed under it, on purpose
                log.exception("span export raised")
            sent = False
        if sent:
            self._counts.exported += count
        else:
            self._counts.failed += count

    def _export_with_retries(self, body: bytes, count: int) -> bool:
        deadline = min(time.monotonic() + self._timeout, self._finish_by)
        delay = 0.5
        while not self._closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            outcome, said = self._transport.export(body, remaining)
            if outcome is Outcome.DELIVERED:
                return True
            if outcome is Outcome.REFUSED:
                log.warning("the collector refused %d spans: %s", count, said)
                return False
            wait = min(delay, deadline - time.monotonic())
            if wait <= 0 or self._stopping.wait(wait):
                return False
            delay *= 2
        return False

    def finish_by(self, deadline: float) -> None:
        self._finish_by = deadline
        self._stopping.set()

    def shutdown(self) -> None:
        self._closed = True
        self._stopping.set()
        self._transport.close()
