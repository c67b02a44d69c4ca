"""OTLP/HTTP (protobuf) span exporter: the lean encoder plus a POST with retries, on the export thread.

Runs only on the BatchSpanProcessor's background thread, so the blocking stdlib HTTP client is fine
here and never touches the event loop. Retries what the OTLP spec calls retryable (429, 502, 503,
504, connection errors) with exponential backoff, within the configured timeout; then the batch is
reported failed (and counted by the caller), never retried forever.
"""

from __future__ import annotations

import gzip
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from gateway.telemetry.otlp_encode import encode_spans

log = logging.getLogger("lockgate.telemetry")

_RETRYABLE = frozenset({429, 502, 503, 504})


class OtlpHttpSpanExporter(SpanExporter):
    def __init__(self, endpoint: str, headers: dict[str, str], timeout: float, compression: str | None) -> None:
        self._endpoint = endpoint
        self._headers = {"Content-Type": "application/x-protobuf", "User-Agent": "lockgate-otlp", **headers}
        if compression == "gzip":
            self._headers["Content-Encoding"] = "gzip"
        self._gzip = compression == "gzip"
        self._timeout = timeout
        self._stopping = threading.Event()
        # Encoded attributes repeat (model, provider, address): keep their bytes across batches.
        self._cache: dict[tuple[Any, ...], bytes] = {}

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._stopping.is_set():
            return SpanExportResult.FAILURE
        if len(self._cache) >= 4096:  # unique values (ids) fill it; start afresh
            self._cache.clear()
        body = encode_spans(spans, self._cache)
        if self._gzip:
            body = gzip.compress(body)
        deadline = time.monotonic() + self._timeout
        delay = 0.5
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return SpanExportResult.FAILURE
            status = self._post(body, remaining)
            if status is not None and 200 <= status < 300:
                return SpanExportResult.SUCCESS
            if status is not None and status not in _RETRYABLE:
                log.warning("the collector refused %d spans with HTTP %d", len(spans), status)
                return SpanExportResult.FAILURE
            wait = min(delay, deadline - time.monotonic())
            if wait <= 0 or self._stopping.wait(wait):
                return SpanExportResult.FAILURE
            delay *= 2

    def _post(self, body: bytes, timeout: float) -> int | None:
        """The HTTP status, or None when the collector could not be reached."""
        request = urllib.request.Request(self._endpoint, data=body, headers=self._headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read()
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)
        except (urllib.error.URLError, OSError, TimeoutError):
            return None

    def shutdown(self) -> None:
        self._stopping.set()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
