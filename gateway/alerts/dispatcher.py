"""Detects threshold crossings and delivers each alert once, off the request path.

The request path only compares numbers and enqueues; a background task claims the alert in the
store (a create-only document per scope, window and threshold, so exactly one replica sends it) and
posts it to every webhook. Each alert also becomes a decision on the request (a span event) and
goes to the metric hooks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import orjson

from gateway.alerts.webhooks import Alert, payload
from gateway.budgets.periods import GRACE_SECONDS
from gateway.budgets.scopes import ScopedCharge
from gateway.config.governance import AlertsSection
from gateway.context import ApiRequest
from gateway.log_throttle import ThrottledWarning
from gateway.store import Store, StoreUnavailable, VersionConflict
from gateway.webhooks import WebhookPoster

log = logging.getLogger("lockgate.alerts")
NAMESPACE = "alerts"
MetricHook = Callable[[Alert], None]


class AlertDispatcher:
    def __init__(self, config: AlertsSection, store: Store) -> None:
        self._config = config
        self._store = store
        self._queue: asyncio.Queue[Alert] = asyncio.Queue(maxsize=1000)
        self._poster = WebhookPoster("alert", config.max_attempts, config.backoff_seconds)
        self._worker: asyncio.Task[None] | None = None
        self.metric_hooks: list[MetricHook] = []
        # Alerts this process already handled: repeats (every refusal of an exhausted budget) stay local.
        self._seen: set[str] = set()
        self._warn_full = ThrottledWarning(log)

    # ---- the request path: compare, record, enqueue

    def settled(self, request: ApiRequest | None, moved: list[tuple[ScopedCharge, int, int]]) -> None:
        """Dollar counters a settlement (or a lease's sync, `request` None) moved from before to after."""
        for scoped, before, after in moved:
            limit = scoped.charge.limit
            if not limit:
                continue
            for threshold in self._config.thresholds:
                mark = threshold * limit
                if before < mark <= after:
                    self._emit(request, scoped, threshold, after, "crossed")

    def refused(self, request: ApiRequest, scoped: ScopedCharge, used: int) -> None:
        """A request that did not fit: the budget is exhausted for practical purposes."""
        for threshold in self._config.thresholds:
            if threshold <= 1.0:
                self._emit(request, scoped, threshold, used, "refused")

    def _emit(self, request: ApiRequest | None, scoped: ScopedCharge, threshold: float, spent: int,
              reason: str) -> None:
        scope = scoped.scope
        alert = Alert(scope.kind, scope.id, scope.limit.period, scope.label, threshold, scoped.charge.limit or 0,
                      spent, scope.reset_at, time.time(), reason)
        key = _key(alert)
        if key in self._seen:
            return
        if len(self._seen) > 100_000:
            self._seen.clear()
        self._seen.add(key)
        if reason == "crossed" and request is not None:
            request.decide("lockgate.budget.alert", scope=f"{scope.kind}:{scope.id}", threshold=threshold,
                           spent_usd_micros=spent, limit_usd_micros=alert.limit_micros)
        try:
            self._queue.put_nowait(alert)
        except asyncio.QueueFull:
            self._warn_full("alert queue full: dropped %s at %.0f%%", alert.scope_name, threshold * 100)

    # ---- background delivery

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            alert = await self._queue.get()
            try:
                if await self._claim(alert):
                    for metric_hook in self.metric_hooks:
                        metric_hook(alert)
                    for webhook in self._config.webhooks:
                        self._poster.post(webhook.url, orjson.dumps(payload(alert, webhook.format)))
            except Exception:
                log.exception("alert for %s not processed", alert.scope_name)

    async def _claim(self, alert: Alert) -> bool:
        """True for the one replica that first records this scope/window/threshold."""
        key = _key(alert)
        expires = None if alert.reset_at is None else alert.reset_at + GRACE_SECONDS
        try:
            await self._store.doc_put(
                NAMESPACE, key, {"fired_at": alert.fired_at, "spent_micros": alert.spent_micros},
                time.time(), expect_version=0, expires_at=expires,
            )
        except VersionConflict:
            return False
        except StoreUnavailable as exc:
            log.warning("alert for %s not claimed (store unreachable), dropped: %s", alert.scope_name, exc)
            return False
        return True

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        await self._poster.aclose()


def _key(alert: Alert) -> str:
    return f"{alert.scope_kind}:{alert.scope_id}:{alert.period}:{alert.window}:{alert.threshold:g}"
