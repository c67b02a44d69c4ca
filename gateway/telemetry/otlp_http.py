"""OTLP/HTTP (protobuf) span exporter: the lean encoder plus a POST with retries, on the export thread.

Runs only on the BatchSpanProcessor's background thread, so the blocking stdlib HTTP client is fine
here and never touches the event loop. The connection is kept alive between batches: a new one per
batch meant a resolve and a connect each time, every blocking call handing the GIL back and forth
with the event loop's thread. Retries what the OTLP spec calls retryable (429, 502, 503,
504, connection errors) with exponential backoff, within the configured timeout; then the batch is
reported failed (and counted by the caller), never retried forever.
"""

from __future__ import annotations

import gzip
import http.client
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from gateway.telemetry.otlp_encode import encode_spans

log = logging.getLogger("lockgate.telemetry")

_RETRYABLE = frozenset({429, 502, 503, 504})


class OtlpHttpSpanExporter(SpanExporter):
    def __init__(self, endpoint: str, headers: dict[str, str], timeout: float, compression: str | None) -> None:
        self._endpoint = endpoint
        parts = urlsplit(endpoint)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._https else 80)
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._connection: http.client.HTTPConnection | None = None
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
        for attempt in (0, 1):
            reused = self._connection is not None
            connection = self._connection or self._connect(timeout)
            try:
                connection.timeout = timeout
                if connection.sock is not None:
                    connection.sock.settimeout(timeout)
                connection.request("POST", self._path, body=body, headers=self._headers)
                response = connection.getresponse()
                response.read()
                if response.will_close:
                    self._close()
                return int(response.status)
            except (OSError, http.client.HTTPException):
                self._close()
                if attempt or not reused:
                    return None
                # A kept-alive connection the collector had closed meanwhile: once more, on a new one.
        return None

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        self._connection = kind(self._host, self._port, timeout=timeout)
        return self._connection

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def shutdown(self) -> None:
        self._stopping.set()
        self._close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
