"""OTLP/gRPC span export: the batch's protobuf bytes (`encoded_batch`) sent as the trace service's Export call.

The SDK's gRPC exporter takes `ReadableSpan`s and encodes them with the SDK's encoder, ~10 times
dearer than Lockgate's (bench/telemetry_middleware_cost.py): tracing over gRPC cost x0.60 of the
throughput with tracing off, against x0.80-0.86 over HTTP (bench/telemetry_overhead.py, session 9).
The method is called here with the request already serialized, so both transports send the same
bytes, written once. The channel is made as the SDK's exporter makes it: TLS unless the endpoint
is `http://...` or OTEL_EXPORTER_OTLP_(TRACES_)INSECURE says otherwise, the configured CA and client
certificate, gzip when asked, headers as metadata; grpc itself follows the `grpc_proxy`/`https_proxy`
variables. The only module of the gateway that imports grpc (the SDK's gRPC metric exporter aside).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc

from gateway.telemetry.encoded_batch import Outcome
from gateway.telemetry.settings import OtlpTls, unreadable_tls

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
# The OTLP spec's retryable codes (RESOURCE_EXHAUSTED too, as the SDK's exporter retries it).
_RETRYABLE = frozenset({
    grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED, grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS,
})


def grpc_credentials(tls: OtlpTls) -> grpc.ChannelCredentials | None:
    """Channel credentials from the TLS files, or None when none is configured."""
    if not any((tls.certificate, tls.client_certificate, tls.client_key)):
        return None

    def read(path: str | None) -> bytes | None:
        if path is None:
            return None
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise unreadable_tls(exc) from None

    return grpc.ssl_channel_credentials(read(tls.certificate), read(tls.client_key), read(tls.client_certificate))


def secure_endpoint(endpoint: str, insecure: bool | None) -> bool:
    """Whether to use TLS, by the OTLP exporter's rules: `https://` always; else the INSECURE variable
    when set; else TLS unless the endpoint says `http://` (so a bare `host:4317` gets TLS)."""
    scheme = urlsplit(endpoint).scheme
    if scheme == "https":
        return True
    if insecure is not None:
        return not insecure
    return scheme != "http"


class GrpcTransport:
    """Calls the collector's trace service with serialized requests (an `encoded_batch.Transport`)."""

    def __init__(
        self, endpoint: str, headers: dict[str, str], compression: str | None, tls: OtlpTls,
        insecure: bool | None = None,
    ) -> None:
        parts = urlsplit(endpoint)
        self._target = parts.netloc or endpoint
        self._credentials = (grpc_credentials(tls) or grpc.ssl_channel_credentials()) \
            if secure_endpoint(endpoint, insecure) else None
        self._metadata = tuple((key.lower(), value) for key, value in headers.items())  # gRPC wants lower case
        self._compression = grpc.Compression.Gzip if compression == "gzip" else grpc.Compression.NoCompression
        self._lock = threading.Lock()  # the channel is replaced on the export thread, closed from another
        self._channel: grpc.Channel | None = None
        self._export: Any = None
        self._closed = False

    def _call(self) -> Any:
        """The Export method on the current channel (made now if there is none); None once closed."""
        with self._lock:
            if self._closed:
                return None
            if self._export is None:
                options = [("grpc.primary_user_agent", "lockgate-otlp")]
                if self._credentials is None:
                    channel = grpc.insecure_channel(self._target, options, self._compression)
                else:
                    channel = grpc.secure_channel(self._target, self._credentials, options, self._compression)
                # No serializers: the request is sent as the bytes it already is, the answer not parsed.
                self._channel, self._export = channel, channel.unary_unary(EXPORT_METHOD)
            return self._export

    def export(self, body: bytes, timeout: float) -> tuple[Outcome, str]:
        call = self._call()
        if call is None:  # the gateway is stopping: the batch gives up
            return Outcome.RETRY, ""
        try:
            call(body, timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            code = error.code()
            if code is grpc.StatusCode.UNAVAILABLE:
                # A new channel for the retry: an old one waits out grpc's own reconnect backoff, which
                # grows to minutes while a collector is away (the SDK's exporter does the same).
                self._drop_channel()
            if code in _RETRYABLE:
                return Outcome.RETRY, ""
            return Outcome.REFUSED, f"{code.name} {error.details() or ''}".strip()
        return Outcome.DELIVERED, ""

    def _drop_channel(self) -> None:
        with self._lock:
            channel, self._channel, self._export = self._channel, None, None
        if channel is not None:
            channel.close()

    def close(self) -> None:
        """Cancels an export in progress (closing a channel ends its calls) and keeps it closed."""
        with self._lock:
            self._closed = True
        self._drop_channel()
