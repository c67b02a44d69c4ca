"""`GET /metrics`: the app's OpenTelemetry metrics in Prometheus text format.

The only module that imports prometheus_client and the OpenTelemetry Prometheus reader. Each app
gets its own `CollectorRegistry` (never prometheus_client's global one), so metrics of two gateways
in one process never mix. Rendering happens off the event loop: collection walks every series.
"""

from __future__ import annotations

import asyncio

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.requests import Request
from starlette.responses import Response


class PrometheusEndpoint:
    def __init__(self) -> None:
        self._registry = CollectorRegistry(auto_describe=False)
        # target_info carries the resource (service.name) as Prometheus' convention has it.
        self.reader = PrometheusMetricReader(registry=self._registry)

    def render(self) -> bytes:
        return generate_latest(self._registry)

    async def handle(self, request: Request) -> Response:
        body = await asyncio.to_thread(self.render)
        return Response(body, media_type=CONTENT_TYPE_LATEST)
