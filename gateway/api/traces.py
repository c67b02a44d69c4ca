"""`POST /v1/traces`: an agent's OTLP/HTTP spans, forwarded to the gateway's own trace exporter.

An agent without an OpenTelemetry pipeline of its own (the SDK's `export_to_gateway`) sends its
spans here with its gateway key; the gateway forwards them to the collector it exports its own spans
to, with its own exporter headers, so the agent needs to know one endpoint only. Over OTLP/HTTP the
bytes go untouched (protobuf or JSON, gzip or not) and the collector's answer (status and body) goes
back to the agent's exporter, which retries what OTLP says is retryable. Over OTLP/gRPC the protobuf
request is the Export call's message (gzip undone first; JSON is refused with a 415, as gRPC carries
protobuf only), and the answer is OTLP/HTTP's: 200, 502 to retry, 400 when the collector refused.
A gateway that exports no traces answers 501 rather than dropping the spans silently. The collector
is reached as the gateway's own spans reach it: its TLS files and the environment's egress proxy.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import TYPE_CHECKING

import aiohttp
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.common import read_body
from gateway.errors import (
    InvalidRequest,
    PayloadTooLarge,
    TracesNotExported,
    UnsupportedMediaType,
    UpstreamError,
)
from gateway.pipeline import Pipeline
from gateway.telemetry.encoded_batch import Outcome
from gateway.telemetry.settings import GRPC_PROTOCOL, HTTP_PROTOCOL, TelemetrySettings

if TYPE_CHECKING:
    from gateway.telemetry.otlp_grpc import GrpcTransport

PASSED_HEADERS = ("content-type", "content-encoding")
PROTOBUF = "application/x-protobuf"


class TracesApi:
    def __init__(self, pipeline: Pipeline, settings: TelemetrySettings, max_body_bytes: int) -> None:
        self._pipeline = pipeline
        self._limit = max_body_bytes
        exports = bool(settings.tracing and settings.traces_endpoint)
        self._endpoint = settings.traces_endpoint if exports and settings.protocol == HTTP_PROTOCOL else None
        self._grpc: GrpcTransport | None = None
        if exports and settings.protocol == GRPC_PROTOCOL and settings.traces_endpoint:
            from gateway.telemetry.otlp_grpc import GrpcTransport  # grpc is imported only where it is used

            self._grpc = GrpcTransport(settings.traces_endpoint, dict(settings.headers), settings.compression,
                                       settings.traces_tls, settings.traces_insecure)
        self._headers = dict(settings.headers)
        self._seconds = settings.timeout
        self._timeout = aiohttp.ClientTimeout(total=settings.timeout)
        # The same TLS (a private CA, client certificates) as the gateway's own spans; None: the defaults.
        self._tls = settings.traces_tls.context_for(self._endpoint) if self._endpoint else None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._endpoint is not None:
            # trust_env: the egress proxy the environment names (HTTPS_PROXY minus NO_PROXY), as for the
            # gateway's own spans.
            connector = aiohttp.TCPConnector(ssl=self._tls) if self._tls is not None else None
            self._session = aiohttp.ClientSession(timeout=self._timeout, connector=connector, trust_env=True)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._grpc is not None:
            self._grpc.close()

    async def export(self, request: Request) -> Response:
        self._pipeline.authenticate(request.headers)
        if self._grpc is not None:
            return await self._export_over_grpc(request, self._grpc)
        if self._endpoint is None or self._session is None:
            raise TracesNotExported(
                "This gateway does not export traces over OTLP (telemetry.otlp.endpoint), so it cannot "
                "forward yours; export them to a collector directly."
            )
        body = await read_body(request, self._limit)
        headers = {**self._headers, **{h: request.headers[h] for h in PASSED_HEADERS if h in request.headers}}
        try:
            async with self._session.post(self._endpoint, data=body, headers=headers) as reply:
                answer = await reply.read()
                kind = reply.headers.get("content-type", "application/x-protobuf")
                return Response(answer, status_code=reply.status, media_type=kind)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamError(f"The trace collector could not be reached: {type(exc).__name__}.", retry_after=1.0) from None

    async def _export_over_grpc(self, request: Request, grpc: GrpcTransport) -> Response:
        kind = request.headers.get("content-type", PROTOBUF).split(";")[0].strip().lower()
        if kind != PROTOBUF:
            raise UnsupportedMediaType(
                f"This gateway forwards spans over OTLP/gRPC, which carries protobuf: send {PROTOBUF}, not {kind}."
            )
        body = await read_body(request, self._limit)
        gzipped = request.headers.get("content-encoding", "").strip().lower() == "gzip"
        # Off the event loop: undoing gzip (up to the body limit) and the blocking gRPC call.
        outcome, said = await asyncio.to_thread(self._send_over_grpc, grpc, body, gzipped)
        if outcome is Outcome.REFUSED:
            raise InvalidRequest(f"The trace collector refused the spans: {said}.")
        if outcome is Outcome.RETRY:
            raise UpstreamError("The trace collector could not be reached over gRPC.", retry_after=1.0)
        return Response(b"", media_type=PROTOBUF)  # an empty ExportTraceServiceResponse: all taken

    def _send_over_grpc(self, grpc: GrpcTransport, body: bytes, gzipped: bool) -> tuple[Outcome, str]:
        return grpc.export(self._gunzip(body) if gzipped else body, self._seconds)

    def _gunzip(self, body: bytes) -> bytes:
        """The gzip body undone, refused past the body limit (a small bomb must not become gigabytes)."""
        inflate = zlib.decompressobj(wbits=31)
        try:
            plain = inflate.decompress(body, self._limit + 1)
        except zlib.error:
            raise InvalidRequest("The request body is not valid gzip (Content-Encoding: gzip).") from None
        if len(plain) > self._limit:
            raise PayloadTooLarge(
                f"The request body is larger than this gateway accepts once decompressed ({self._limit} bytes; "
                "see server.max_body_bytes)."
            )
        return plain
