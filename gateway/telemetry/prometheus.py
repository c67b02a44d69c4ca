"""`GET /metrics`: the app's OpenTelemetry metrics in Prometheus text format.

The only module that imports prometheus_client and the OpenTelemetry Prometheus reader. Each app
gets its own `CollectorRegistry` (never prometheus_client's global one), so metrics of two gateways
in one process never mix. Rendering happens off the event loop: collection walks every series.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from gateway.telemetry.histograms import LeanHistograms


class _Reader(PrometheusMetricReader):
    """The SDK's Prometheus reader, rendering Lockgate's own histograms along with the SDK's metrics."""

    def __init__(self, registry: CollectorRegistry, histograms: LeanHistograms) -> None:
        super().__init__(registry=registry)
        self._histograms = histograms

    def _receive_metrics(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> None:
        super()._receive_metrics(self._histograms.add_to(metrics_data), timeout_millis, **kwargs)


class PrometheusEndpoint:
    def __init__(self, histograms: LeanHistograms) -> None:
        self._registry = CollectorRegistry(auto_describe=False)
        # target_info carries the resource (service.name) as Prometheus' convention has it.
        self.reader = _Reader(self._registry, histograms)
        # Figures read from elsewhere (the store) just before a scrape, so the scrape is current.
        self.before_scrape: list[Callable[[], Awaitable[None]]] = []

    def render(self) -> bytes:
        return generate_latest(self._registry)

    async def handle(self, request: Request) -> Response:
        for refresh in self.before_scrape:
            await refresh()
        body = await asyncio.to_thread(self.render)
        return Response(body, media_type=CONTENT_TYPE_LATEST)
