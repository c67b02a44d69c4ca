"""What a request's spans are written to on their way out, and how their fates are counted.

`SpanRecorder.build` writes each span, as plain values, to a `SpanWriter`. The OTLP batch's writer
(`otlp_encode.SpanBytes`, over HTTP or gRPC) encodes it into protobuf there and then; the SDK's
writer (`sdk.ReadableSpanWriter`) makes a `ReadableSpan` for an SDK exporter (the in-memory one
tests use). A `SpanBatch` holds what was written until it is sent (`span_batches` decides
when).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode

Attrs = dict[str, Any]
# The status of every span that did not fail: one object, so a writer can tell it by identity.
UNSET_STATUS = Status(StatusCode.UNSET)
# A span event: name, attributes, time (ns since the epoch).
EventValues = tuple[str, Attrs, int]


@dataclass(slots=True)
class ExportCounts:
    """Spans by fate. Updated from the export thread and the event loop; approximate under races."""

    exported: int = 0
    failed: int = 0
    dropped: int = 0


class SpanWriter(Protocol):
    def span(
        self, trace: SpanContext, span_id: int, parent: SpanContext | None, name: str, kind: SpanKind,
        start: int, end: int, fixed: Attrs | None, attributes: Attrs, events: Sequence[EventValues], status: Status,
    ) -> None:
        """One finished span. `trace` carries the trace id, flags and state (the span's own context, or its
        parent's); `fixed` is a group of attributes shared by many spans, always the same dict object
        (a deployment's), never sharing a key with `attributes`."""


class SpanBatch(Protocol):
    """The spans written since the last send, and how to send them."""

    @property
    def writer(self) -> SpanWriter: ...

    @property
    def pending(self) -> int:
        """Spans written and not sent yet."""

    def mark(self) -> tuple[int, int]:
        """A point to roll back to (before a request whose spans could not all be written)."""

    def rollback(self, mark: tuple[int, int]) -> None: ...

    def send(self) -> None:
        """Export what was written, counting it exported or failed; never raises."""

    def finish_by(self, deadline: float) -> None:
        """The gateway is stopping: no send, retries included, may last past `deadline` (`time.monotonic()`)."""

    def shutdown(self) -> None:
        """Close the exporter; a send still waiting on the collector ends now."""
