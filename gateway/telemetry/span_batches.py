"""Finished requests on their way to the exporter: their spans are built and exported off the event loop.

When a request ends, the event loop only appends a `FinishedRequest` (the SERVER span's plain values
and the request's own record) to a queue. A background thread turns a batch of them into spans
(`SpanRecorder.build`) and exports the batch. Building attributes and encoding them in batches, in
one place, cost the event loop's thread nothing and caches stay warm; doing it per request on the
event loop was most of tracing's cost under load (bench/README.md, telemetry).

A full queue drops new requests' spans (counted), never blocks or slows a request. With an
exporter given directly (tests: in-memory), spans are built and exported at once on the caller's
thread, so a test sees them as soon as the response is complete.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter

from gateway.telemetry.sdk import ExportCounts
from gateway.telemetry.spans import FinishedRequest

log = logging.getLogger("lockgate.telemetry")


Build = Callable[[FinishedRequest], list[ReadableSpan]]


def _build_all(build: Build, items: Sequence[FinishedRequest], counts: ExportCounts) -> list[ReadableSpan]:
    spans: list[ReadableSpan] = []
    for item in items:
        try:
            spans.extend(build(item))
        except Exception:  # one request's bad value must not lose the batch or kill the thread
            log.exception("building a request's spans failed")
            counts.failed += item.span_count
    return spans


class ImmediateSpans:
    """Builds and exports each request's spans at once, on the caller's thread (tests, no exporter)."""

    def __init__(self, build: Build, exporter: SpanExporter, counts: ExportCounts) -> None:
        self._build = build
        self._exporter = exporter
        self._counts = counts

    def write(self, finished: FinishedRequest) -> None:
        self._exporter.export(_build_all(self._build, (finished,), self._counts))

    def shutdown(self) -> None:
        self._exporter.shutdown()


class DiscardedSpans:
    """Tracing on with nowhere to send the spans: requests get trace ids, and nothing is built."""

    def write(self, finished: FinishedRequest) -> None:
        return None

    def shutdown(self) -> None:
        return None


class SpanBatcher:
    """A bounded queue of finished requests and the thread that builds and exports them in batches."""

    def __init__(
        self, build: Build, exporter: SpanExporter, counts: ExportCounts,
        delay: float, max_batch: int, max_queue: int,
    ) -> None:
        self._build = build
        self._exporter = exporter
        self._counts = counts
        self._delay = delay
        self._max_batch = max_batch
        self._max_queue = max_queue
        self._queue: deque[FinishedRequest] = deque()
        # Spans waiting (a request makes one plus one per attempt): the limits count spans, as OTEL_BSP_* do.
        self._waiting = 0
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="lockgate-span-export", daemon=True)
        self._thread.start()

    def write(self, finished: FinishedRequest) -> None:
        """Queue a finished request (event loop). Never blocks; drops and counts when the queue is full."""
        count = finished.span_count
        if self._waiting + count > self._max_queue or self._stopping:
            self._counts.dropped += count
            return
        self._queue.append(finished)
        self._waiting += count
        if self._waiting >= self._max_batch and not self._wake.is_set():  # set() takes a lock: once is enough
            self._wake.set()

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self._delay)
            self._wake.clear()
            self._drain()
        self._drain()

    def _drain(self) -> None:
        queue = self._queue
        while queue:
            batch: list[FinishedRequest] = []
            spans = 0
            while queue and spans < self._max_batch:
                item = queue.popleft()
                batch.append(item)
                spans += item.span_count
            # Read-modify-write races with `write` on the event loop's thread: recount from what is left.
            self._waiting = sum(item.span_count for item in queue) if queue else 0
            built = _build_all(self._build, batch, self._counts)
            if built:
                self._exporter.export(built)  # counted, and never raising, by the counting exporter

    def shutdown(self, timeout: float = 10.0) -> None:
        """Export what is queued (bounded by `timeout`), stop the thread, close the exporter."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        self._exporter.shutdown()
