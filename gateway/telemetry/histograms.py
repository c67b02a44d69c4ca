"""Histograms aggregated by Lockgate itself and handed to the SDK's exporters at collection time.

The SDK's synchronous `Histogram.record` validates and hashes the attribute set on every call; with
four records per request that was the largest part of metrics' cost (bench/telemetry_middleware_cost.py).
Here a record is a dict lookup by a key the caller already has, a bisect and a few additions. At
collection (a Prometheus scrape, an OTLP export) the histograms become ordinary SDK `Metric`s added
to the `MetricsData` the reader received, so every exporter sees them as if the SDK had built them.

Temporality is cumulative, from the gateway's start; explicit bucket boundaries, upper bound
inclusive, as the SDK's default aggregation has them.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

Attrs = dict[str, Any]


class _Series:
    __slots__ = ("attributes", "count", "counts", "high", "low", "total")

    def __init__(self, attributes: Attrs, buckets: int) -> None:
        self.attributes = attributes
        self.counts = [0] * buckets
        self.total = 0.0
        self.count = 0
        self.low = float("inf")
        self.high = float("-inf")


class LeanHistogram:
    def __init__(
        self, name: str, unit: str, description: str, boundaries: Sequence[float], lock: threading.Lock
    ) -> None:
        self.name, self.unit, self.description = name, unit, description
        self._bounds = tuple(boundaries)
        self._series: dict[tuple[Any, ...], _Series] = {}
        # Recording happens on the event loop, collection on an exporter thread: the lock (one for
        # all of an app's histograms) keeps a series' count, sum and buckets consistent in what is exported.
        self._lock = lock

    def record(self, key: tuple[Any, ...], attributes: Callable[[], Attrs], value: float) -> None:
        """Add `value` to the series `key`; `attributes` builds its attribute set the first time only."""
        with self._lock:
            self.add(self._get(key, attributes), value)

    def series(self, key: tuple[Any, ...], attributes: Callable[[], Attrs]) -> _Series:
        """The series `key` (made now if new), for a caller that keeps it and `add`s to it later."""
        with self._lock:
            return self._get(key, attributes)

    def _get(self, key: tuple[Any, ...], attributes: Callable[[], Attrs]) -> _Series:
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series(attributes(), len(self._bounds) + 1)
        return series

    def add(self, series: _Series, value: float) -> None:
        """Add `value` to one of this histogram's series; the caller holds the histograms' lock."""
        series.counts[bisect_left(self._bounds, value)] += 1
        series.total += value
        series.count += 1
        # Comparisons, not min()/max(): a builtin call costs more on this path, taken every request.
        if value < series.low:  # noqa: PLR1730
            series.low = value
        if value > series.high:  # noqa: PLR1730
            series.high = value

    def metric(self, start_ns: int, now_ns: int) -> Metric | None:
        with self._lock:
            points = [
                HistogramDataPoint(
                    attributes=s.attributes, start_time_unix_nano=start_ns, time_unix_nano=now_ns, count=s.count,
                    sum=s.total, bucket_counts=list(s.counts), explicit_bounds=self._bounds, min=s.low, max=s.high,
                )
                for s in self._series.values()
            ]
        if not points:
            return None
        return Metric(self.name, self.description, self.unit,
                      Histogram(points, AggregationTemporality.CUMULATIVE))


class LeanHistograms:
    """The app's histograms, and the step that adds them to what a metric reader collected."""

    def __init__(self, resource: Resource, scope: InstrumentationScope) -> None:
        self.resource = resource
        self._scope = scope
        self._started = time.time_ns()
        self._all: list[LeanHistogram] = []
        # One lock for all: a request's records into several histograms take it once (GatewayMetrics).
        self.lock = threading.Lock()

    def create(self, name: str, unit: str, description: str, boundaries: Sequence[float]) -> LeanHistogram:
        histogram = LeanHistogram(name, unit, description, boundaries, self.lock)
        self._all.append(histogram)
        return histogram

    def add_to(self, data: MetricsData | None) -> MetricsData:
        """`data` with the histograms in this app's scope (merged into it when the SDK reported it)."""
        now = time.time_ns()
        metrics = [m for h in self._all if (m := h.metric(self._started, now)) is not None]
        resources = list(data.resource_metrics) if data is not None else []
        if not metrics:
            return MetricsData(resources)
        for r, resource_metrics in enumerate(resources):
            if resource_metrics.resource is not self.resource and resource_metrics.resource != self.resource:
                continue
            scopes = list(resource_metrics.scope_metrics)
            for s, scope_metrics in enumerate(scopes):
                if scope_metrics.scope == self._scope:
                    scopes[s] = replace(scope_metrics, metrics=[*scope_metrics.metrics, *metrics])
                    break
            else:
                scopes.append(ScopeMetrics(self._scope, metrics, self._scope.schema_url or ""))
            resources[r] = replace(resource_metrics, scope_metrics=scopes)
            return MetricsData(resources)
        resources.append(ResourceMetrics(
            self.resource, [ScopeMetrics(self._scope, metrics, self._scope.schema_url or "")],
            self.resource.schema_url,
        ))
        return MetricsData(resources)
