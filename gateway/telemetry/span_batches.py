"""Finished requests on their way to the exporter: their spans are built and exported off the event loop.

When a request ends, the event loop only appends a `FinishedRequest` (the SERVER span's plain values
and a small record of the request) to a queue. A background thread turns the queued requests into
spans in small chunks, as soon as a chunk's worth waits, writing them into the batch being prepared
(`SpanRecorder.build` into the batch's writer: the OTLP/HTTP one encodes them there and then); the
batch is sent when it is full or `delay` has passed. Reading a request's values soon after it
ended, rather than a whole batch's worth ~0.1 s later, took the event loop's part of tracing from
~+30 to ~+17 us a request (bench/README.md, telemetry): its memory is reused while still in cache.
One POST still carries hundreds of spans.

A full queue drops new requests' spans (counted), never blocks or slows a request. With an
exporter given directly (tests: in-memory), spans are built and exported at once on the caller's
thread, so a test sees them as soon as the response is complete.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from gateway.telemetry.span_export import ExportCounts, SpanBatch, SpanWriter
from gateway.telemetry.spans import FinishedRequest

log = logging.getLogger("lockgate.telemetry")


Build = Callable[[FinishedRequest, SpanWriter], None]
# Spans built per chunk: small enough that a request's values are read soon after it ends.
CHUNK_SPANS = 64


def _build_into(build: Build, items: Sequence[FinishedRequest], batch: SpanBatch, counts: ExportCounts) -> None:
    writer = batch.writer
    for item in items:
        mark = batch.mark()
        try:
            build(item, writer)
        except Exception:  # one request's bad value must not lose the batch or kill the thread
            log.exception("building a request's spans failed")
            batch.rollback(mark)  # none of its spans, rather than some
            counts.failed += item.span_count


class ImmediateSpans:
    """Builds and exports each request's spans at once, on the caller's thread (tests' in-memory exporter)."""

    def __init__(self, build: Build, batch: SpanBatch, counts: ExportCounts) -> None:
        self._build = build
        self._batch = batch
        self._counts = counts

    def write(self, finished: FinishedRequest) -> None:
        _build_into(self._build, (finished,), self._batch, self._counts)
        self._batch.send()

    def shutdown(self, seconds: float) -> None:
        self._batch.shutdown()


class DiscardedSpans:
    """Tracing on with nowhere to send the spans: requests get trace ids, and nothing is built."""

    def write(self, finished: FinishedRequest) -> None:
        return None

    def shutdown(self, seconds: float) -> None:
        return None


class SpanBatcher:
    """A bounded queue of finished requests and the thread that builds their spans and sends them in batches."""

    def __init__(
        self, build: Build, batch: SpanBatch, counts: ExportCounts, delay: float, max_batch: int, max_queue: int,
    ) -> None:
        self._build = build
        self._batch = batch
        self._counts = counts
        self._delay = delay
        self._max_batch = max_batch
        self._chunk = min(CHUNK_SPANS, max_batch)
        self._max_queue = max_queue
        self._queue: deque[FinishedRequest] = deque()
        # Spans waiting (a request makes one plus one per attempt; the limits count spans, as OTEL_BSP_*
        # do) are those queued less those taken. Each count has one writer: `_queued` the event loop,
        # `_taken` the export thread, so neither update can be lost to the other thread.
        self._queued = 0
        self._taken = 0
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="lockgate-span-export", daemon=True)
        self._thread.start()

    def write(self, finished: FinishedRequest) -> None:
        """Queue a finished request (event loop). Never blocks; drops and counts when the queue is full."""
        count = finished.span_count
        waiting = self._queued - self._taken
        if waiting + count > self._max_queue or self._stopping:
            self._counts.dropped += count
            return
        self._queue.append(finished)
        self._queued += count
        if waiting + count >= self._chunk and not self._wake.is_set():  # set() takes a lock: once is enough
            self._wake.set()

    def _run(self) -> None:
        due = time.monotonic() + self._delay
        while not self._stopping:
            self._wake.wait(max(due - time.monotonic(), 0.0))
            self._wake.clear()
            self._build_queued()
            if self._batch.pending and time.monotonic() >= due:
                self._batch.send()
            if not self._batch.pending:
                due = time.monotonic() + self._delay  # the next span waits at most `delay`
        self._build_queued()
        self._batch.send()

    def _build_queued(self) -> None:
        queue = self._queue
        while queue:
            chunk: list[FinishedRequest] = []
            spans = 0
            # Never past the batch's size (OTEL_BSP_MAX_EXPORT_BATCH_SIZE), but at least one request.
            room = min(self._chunk, max(self._max_batch - self._batch.pending, 1))
            while queue and spans < room:
                item = queue.popleft()
                chunk.append(item)
                spans += item.span_count
            # Never walk the queue here: the event loop appends to it meanwhile, and iterating a deque
            # that changes raises (which killed this thread and, with it, all later export).
            self._taken += spans
            _build_into(self._build, chunk, self._batch, self._counts)
            if self._batch.pending >= self._max_batch:
                self._batch.send()

    def shutdown(self, seconds: float = 10.0) -> None:
        """Export what is queued within `seconds`, stop the thread, close the exporter.

        What the collector has not taken by then is given up and counted: a collector that is down or
        hung held every stop of the gateway up for ~10 s of retries (its OTLP timeout) before."""
        self._batch.finish_by(time.monotonic() + seconds)
        self._stopping = True
        self._wake.set()
        self._thread.join(seconds)
        self._batch.shutdown()
        self._thread.join(1.0)  # the send it was waiting on has just been cut off
        left = self._queued - self._taken
        if left > 0:  # never built: the thread was still stuck
            self._counts.dropped += left
            self._taken += left
