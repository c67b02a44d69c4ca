"""OTLP/HTTP (protobuf) span export: the lean encoder plus a POST with retries, on the export thread.

Spans are written into protobuf as they are built (the batch's `SpanBytes` writer), in small
chunks, and sent together when the batch is full or due (`send`), so a finished request's values
are read soon after it ends while one POST still carries hundreds of spans. The connection is kept
alive between batches: a new one per batch meant a resolve and a connect each time, every blocking
call handing the GIL back and forth with the event loop's thread. Retries what the OTLP spec calls
retryable (429, 502, 503, 504, connection errors) with exponential backoff, within the configured
timeout; then the batch is counted failed, never retried forever. Runs only on the export thread:
the blocking stdlib HTTP client is fine here. TLS (a private CA, client certificates) and an
egress proxy from the environment are honoured as the SDK's exporters honour them.
"""

from __future__ import annotations

import gzip
import http.client
import logging
import socket
import threading
import time
from urllib.parse import urlsplit

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from gateway.egress import proxy_for
from gateway.telemetry.otlp_encode import SpanBytes, wrap_span_messages
from gateway.telemetry.settings import OtlpTls
from gateway.telemetry.span_export import ExportCounts

log = logging.getLogger("lockgate.telemetry")

_RETRYABLE = frozenset({429, 502, 503, 504})


class OtlpHttpSpanBatch:
    """The batch being written for the collector (a `span_export.SpanBatch`): spans go straight into protobuf."""

    def __init__(
        self, endpoint: str, headers: dict[str, str], timeout: float, compression: str | None, counts: ExportCounts,
        resource: Resource, scope: InstrumentationScope, tls: OtlpTls | None = None,
    ) -> None:
        self._endpoint = endpoint
        parts = urlsplit(endpoint)
        self._https = parts.scheme == "https"
        # Made once (it reads the CA and key files): a connection is made again after every failure.
        self._tls = (tls or OtlpTls()).context_for(endpoint)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._https else 80)
        self._proxy = proxy_for(endpoint)  # the environment's egress proxy, as the SDK's exporters follow it
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._connection: http.client.HTTPConnection | None = None
        self._headers = {"Content-Type": "application/x-protobuf", "User-Agent": "lockgate-otlp", **headers}
        if self._proxy is not None and not self._https:
            # Plain HTTP goes to the proxy itself, the collector's whole URL as the target (as requests
            # sends it: many proxies tunnel only to port 443); HTTPS goes through a CONNECT tunnel.
            self._path = f"http://{self._host}:{self._port}{self._path}"
            self._headers.update(self._proxy.headers)
        if compression == "gzip":
            self._headers["Content-Encoding"] = "gzip"
        self._gzip = compression == "gzip"
        self._timeout = timeout
        self._counts = counts
        self._closed = False
        self._stopping = threading.Event()  # ends a wait to retry: the gateway is stopping
        self._finish_by = float("inf")  # no send lasts past this (time.monotonic()) once the gateway stops
        self._resource = resource
        self._scope = scope
        self._writer = SpanBytes()
        self._sent = 0  # writer.count at the last send

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
        """POST what was written (with retries), and count it exported or failed."""
        count, parts = self.pending, self._writer.parts
        if not count:
            return
        self._writer.parts, self._sent = [], self._writer.count
        try:
            body = wrap_span_messages(self._resource, self._scope, parts, self._writer.cache)
            sent = self._post_with_retries(body, count)
        except Exception:  # a bug here must not kill the export thread
            if not self._closed:  # else: the connection was closed under it, on purpose
                log.exception("span export raised")
            sent = False
        if sent:
            self._counts.exported += count
        else:
            self._counts.failed += count

    def _post_with_retries(self, body: bytes, count: int) -> bool:
        if self._closed:
            return False
        if self._gzip:
            body = gzip.compress(body)
        deadline = min(time.monotonic() + self._timeout, self._finish_by)
        delay = 0.5
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            status = self._post(body, remaining)
            if status is not None and 200 <= status < 300:
                return True
            if status is not None and status not in _RETRYABLE:
                log.warning("the collector refused %d spans with HTTP %d", count, status)
                return False
            wait = min(delay, deadline - time.monotonic())
            if wait <= 0 or self._stopping.wait(wait):
                return False
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
        proxy = self._proxy
        host, port = (proxy.host, proxy.port) if proxy is not None else (self._host, self._port)
        connection: http.client.HTTPConnection
        if self._tls is not None:
            connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=self._tls)
        else:
            connection = http.client.HTTPConnection(host, port, timeout=timeout)
        if proxy is not None and self._tls is not None:  # a CONNECT tunnel to the collector, TLS inside it
            connection.set_tunnel(self._host, self._port, headers=proxy.headers)
        self._connection = connection
        return connection

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def finish_by(self, deadline: float) -> None:
        self._finish_by = deadline
        self._stopping.set()

    def shutdown(self) -> None:
        self._closed = True
        self._stopping.set()
        connection = self._connection
        if connection is not None and connection.sock is not None:
            # Wakes the export thread if it still waits for a hung collector's answer (closing the
            # socket alone does not interrupt a blocked read on Linux).
            try:
                connection.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._close()
