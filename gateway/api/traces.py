"""`POST /v1/traces`: an agent's OTLP/HTTP spans, forwarded to the gateway's own trace exporter.

An agent without an OpenTelemetry pipeline of its own (the SDK's `export_to_gateway`) sends its
spans here with its gateway key; the gateway forwards the bytes untouched (protobuf or JSON, gzip
or not) to the OTLP/HTTP endpoint it exports its own spans to, with its own exporter headers, so
the agent needs to know one endpoint only. The collector's answer (status and body) goes back to the
agent's exporter, which retries what OTLP says is retryable. A gateway that exports no traces over
OTLP/HTTP answers 501 rather than dropping the spans silently. The collector is reached as the
gateway's own spans reach it: its TLS files and the environment's egress proxy.
"""

from __future__ import annotations

import aiohttp
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.common import read_body
from gateway.errors import TracesNotExported, UpstreamError
from gateway.pipeline import Pipeline
from gateway.telemetry.settings import TelemetrySettings

HTTP_PROTOCOL = "http/protobuf"
PASSED_HEADERS = ("content-type", "content-encoding")


class TracesApi:
    def __init__(self, pipeline: Pipeline, settings: TelemetrySettings, max_body_bytes: int) -> None:
        self._pipeline = pipeline
        self._limit = max_body_bytes
        forwards = settings.tracing and settings.traces_endpoint and settings.protocol == HTTP_PROTOCOL
        self._endpoint = settings.traces_endpoint if forwards else None
        self._headers = dict(settings.headers)
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

    async def export(self, request: Request) -> Response:
        self._pipeline.authenticate(request.headers)
        if self._endpoint is None or self._session is None:
            raise TracesNotExported(
                "This gateway does not export traces over OTLP/HTTP (telemetry.otlp.endpoint with "
                "protocol http/protobuf), so it cannot forward yours; export them to a collector directly."
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
