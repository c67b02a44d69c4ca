"""OTLP/HTTP (protobuf) span export: the POST of a batch of spans (`encoded_batch`), on the export thread.

The connection is kept alive between batches: a new one per batch meant a resolve and a connect
each time, every blocking call handing the GIL back and forth with the event loop's thread.
Retryable answers, as the OTLP spec lists them: 429, 502, 503, 504, and no answer at all. Runs only
on the export thread: the blocking stdlib HTTP client is fine here. TLS (a private CA, client
certificates) and an egress proxy from the environment are honoured as the SDK's exporters honour them.
"""

from __future__ import annotations

import gzip
import http.client
import socket
from urllib.parse import urlsplit

from gateway.egress import proxy_for
from gateway.telemetry.encoded_batch import Outcome
from gateway.telemetry.settings import OtlpTls

_RETRYABLE = frozenset({429, 502, 503, 504})


class HttpTransport:
    """POSTs serialized ExportTraceServiceRequests to the collector's `/v1/traces` (an `encoded_batch.Transport`)."""

    def __init__(
        self, endpoint: str, headers: dict[str, str], compression: str | None, tls: OtlpTls | None = None,
    ) -> None:
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

    def export(self, body: bytes, timeout: float) -> tuple[Outcome, str]:
        status = self._post(gzip.compress(body) if self._gzip else body, timeout)
        if status is not None and 200 <= status < 300:
            return Outcome.DELIVERED, ""
        if status is None or status in _RETRYABLE:
            return Outcome.RETRY, ""
        return Outcome.REFUSED, f"HTTP {status}"

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

    def close(self) -> None:
        connection = self._connection
        if connection is not None and connection.sock is not None:
            # Wakes the export thread if it still waits for a hung collector's answer (closing the
            # socket alone does not interrupt a blocked read on Linux).
            try:
                connection.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._close()
