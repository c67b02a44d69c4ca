"""The span batcher: finished requests wait in a bounded queue and are built and exported off the event loop.

Driven with the real span recorder and the SDK's in-memory exporter; what is asserted is what a
collector would receive and what the `lockgate.spans.exported` counts would say.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from gateway.config import parse_config
from gateway.context import ApiRequest
from gateway.telemetry import Telemetry
from gateway.telemetry.sdk import SCOPE, SdkSpanBatch, _CountingExporter  # the counting wrapper the app uses
from gateway.telemetry.span_batches import SpanBatcher
from gateway.telemetry.span_export import ExportCounts
from gateway.telemetry.spans import FinishedRequest, RequestRecord, ServerSpan
from tests.telemetry.conftest import SpanSink

CONFIG = """
model_list:
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o, api_base: 'http://127.0.0.1:9/v1', api_key: sk-test-0123456789}
"""


class GatedSink(SpanSink):
    """Blocks each export until the test opens the gate, so the queue can be filled deterministically."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        self.gate.wait(10)
        return super().export(spans)


def finished(telemetry: Telemetry, name: str = "POST") -> FinishedRequest:
    assert telemetry.recorder is not None
    context, parent = telemetry.recorder.start(None, name)
    request = ApiRequest(request_id="r", operation="chat", headers={}, body={"model": "gpt-4o"}, raw=b"", model="gpt-4o")
    server = ServerSpan(context, parent, name, time.time_ns(), {})
    return FinishedRequest(server, RequestRecord.of(request, False), time.time_ns(), None, None)


def batcher(sink: SpanSink, max_batch: int = 512, max_queue: int = 2048) -> tuple[Telemetry, SpanBatcher, ExportCounts]:
    telemetry = Telemetry(parse_config(CONFIG), environ={}, span_exporter=SpanSink())
    assert telemetry.recorder is not None
    counts = ExportCounts()
    batch = SdkSpanBatch(_CountingExporter(sink, counts), Resource.create({}), SCOPE)
    spans = SpanBatcher(telemetry.recorder.build, batch, counts, 3600, max_batch, max_queue)
    return telemetry, spans, counts


def test_shutdown_exports_everything_still_queued() -> None:
    sink = SpanSink()
    telemetry, spans, counts = batcher(sink)
    for i in range(5):
        spans.write(finished(telemetry, f"POST {i}"))
    assert sink.get_finished_spans() == ()  # the delay is an hour: nothing left yet
    spans.shutdown()
    assert sorted(s.name for s in sink.servers()) == [f"POST {i}" for i in range(5)]
    assert counts.exported == 5 and counts.dropped == 0


def test_a_full_batch_is_exported_without_waiting_for_the_delay() -> None:
    sink = SpanSink()
    telemetry, spans, _ = batcher(sink, max_batch=3)
    for _ in range(3):
        spans.write(finished(telemetry))
    assert len(sink.wait_servers(3)) == 3
    spans.shutdown()


def test_a_full_queue_drops_and_counts_new_spans_and_never_blocks() -> None:
    sink = GatedSink()
    telemetry, spans, counts = batcher(sink, max_batch=1, max_queue=4)
    spans.write(finished(telemetry, "first"))
    assert sink.entered.wait(10)  # the export thread holds "first" and waits at the gate
    for i in range(10):
        spans.write(finished(telemetry, f"queued {i}"))
    assert counts.dropped == 6  # four fit in the queue
    sink.gate.set()
    spans.shutdown()
    assert [s.name for s in sink.servers()] == ["first", "queued 0", "queued 1", "queued 2", "queued 3"]
    assert counts.exported == 5


def test_a_request_whose_spans_cannot_be_built_is_counted_and_the_others_still_go() -> None:
    sink = SpanSink()
    telemetry, spans, counts = batcher(sink)
    broken = finished(telemetry, "broken")
    broken.request.attempts.append(object())  # type: ignore[union-attr, arg-type]
    spans.write(broken)
    spans.write(finished(telemetry, "fine"))
    spans.shutdown()
    assert [s.name for s in sink.servers()] == ["fine"]
    assert counts.failed == 1 + 1 and counts.exported == 1


class BatchSizes(SpanSink):
    """Records how many spans each export carried."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.sizes.append(len(spans))
        return super().export(spans)


def test_spans_built_in_chunks_still_leave_in_one_batch() -> None:
    sink = BatchSizes()
    telemetry, spans, counts = batcher(sink)  # the delay is an hour, a batch 512 spans
    for i in range(150):  # a span each: more than two chunks, built as they come
        spans.write(finished(telemetry, f"POST {i}"))
    spans.shutdown()
    assert sink.sizes == [150]
    assert counts.exported == 150


def test_a_batch_fills_from_several_chunks_and_leaves_without_waiting_for_the_delay() -> None:
    sink = BatchSizes()
    telemetry, spans, _ = batcher(sink, max_batch=200)
    for _ in range(200):
        spans.write(finished(telemetry))
    assert len(sink.wait_servers(200)) == 200  # before shutdown: the delay is an hour
    spans.shutdown()
    assert sink.sizes == [200]


def test_no_export_carries_more_spans_than_the_batch_size() -> None:
    sink = BatchSizes()
    telemetry, spans, counts = batcher(sink, max_batch=100)
    for _ in range(250):
        spans.write(finished(telemetry))
    spans.shutdown()
    assert sum(sink.sizes) == counts.exported == 250
    assert max(sink.sizes) == 100


def test_requests_queued_while_the_export_thread_counts_what_is_left_are_all_exported() -> None:
    # The event loop appends to the queue while the export thread takes chunks from it; the thread
    # switching often makes the two interleave at every step (a loaded gateway does, now and then).
    sink = SpanSink()
    telemetry, spans, counts = batcher(sink, max_batch=512, max_queue=1_000_000)
    requests = [finished(telemetry, f"POST {i}") for i in range(20_000)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for request in requests:
            spans.write(request)
    finally:
        sys.setswitchinterval(interval)
    spans.shutdown(seconds=60)
    assert counts.dropped == counts.failed == 0
    assert counts.exported == len(sink.servers()) == 20_000
