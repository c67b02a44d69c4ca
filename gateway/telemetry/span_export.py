"""What the span export thread hands spans to, and how their fates are counted.

A `SpanBatch` is the batch being prepared for the collector: spans are added as they are built
and sent together (`span_batches.SpanBatcher` decides when). The OTLP/HTTP batch (`otlp_http`)
encodes spans as they are added; `SdkSpanBatch` keeps them for an SDK exporter (OTLP/gRPC).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter


@dataclass(slots=True)
class ExportCounts:
    """Spans by fate. Updated from the export thread and the event loop; approximate under races."""

    exported: int = 0
    failed: int = 0
    dropped: int = 0


class SpanBatch(Protocol):
    """The batch being prepared for the collector: spans are added as they are built, sent together."""

    @property
    def pending(self) -> int: ...

    def add(self, spans: Sequence[ReadableSpan]) -> None: ...

    def send(self) -> None:
        """Export what was added, counting it exported or failed; never raises."""

    def shutdown(self) -> None: ...


class SdkSpanBatch:
    """A `SpanBatch` for an SDK exporter (OTLP/gRPC): the spans are kept and exported together."""

    def __init__(self, exporter: SpanExporter) -> None:
        self._exporter = exporter  # counts what it exports (sdk._CountingExporter)
        self._spans: list[ReadableSpan] = []

    @property
    def pending(self) -> int:
        return len(self._spans)

    def add(self, spans: Sequence[ReadableSpan]) -> None:
        self._spans.extend(spans)

    def send(self) -> None:
        if self._spans:
            spans, self._spans = self._spans, []
            self._exporter.export(spans)

    def shutdown(self) -> None:
        self._exporter.shutdown()
