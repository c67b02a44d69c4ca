"""Builds the governance components (keys, audit, budgets, rate limits, alerts) and their admin routes.

`create_app` calls `Governance.create` once and hands the pieces to the authenticator, the
pipeline and the router; `start`/`aclose` run in the app's lifespan (background sweeper, alert
delivery).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gateway.alerts.dispatcher import AlertDispatcher
from gateway.api.admin import AdminGuard
from gateway.api.admin_keys import AdminKeysApi
from gateway.api.admin_reports import AdminReportsApi
from gateway.audit.trail import AuditTrail
from gateway.budgets.gate import BudgetGate
from gateway.budgets.pricing import PriceBook
from gateway.budgets.scopes import ScopedCharge
from gateway.budgets.spend_recorder import SpendRecorder
from gateway.budgets.status import budget_status
from gateway.config.runtime import RuntimeConfig
from gateway.context import ApiRequest
from gateway.keys.cache import KeyCache
from gateway.keys.records import principal_of
from gateway.keys.registry import KeyRegistry
from gateway.store import Store, StoreUnavailable

log = logging.getLogger("lockgate.governance")


# How often a replica deletes ledger and audit entries past their retention (each replica does; the
# deletes are idempotent and cheap: by time or sequence, a step per statement).
PRUNE_INTERVAL = 3600.0
PRUNE_STEP = 10_000  # entries deleted per statement


@dataclass(slots=True)
class Governance:
    store: Store
    audit: AuditTrail
    key_cache: KeyCache
    keys: KeyRegistry
    guard: AdminGuard
    budgets: BudgetGate
    alerts: AlertDispatcher
    spend: SpendRecorder
    # Every budget's standing now (spent, reserved, left); the optional argument names a session.
    budget_report: Callable[[str | None], Awaitable[list[dict[str, Any]]]]
    sweep_interval: float = 30.0
    ledger_retention: float | None = None  # seconds; None keeps the ledger whole
    audit_retention: float | None = None  # seconds; None keeps the audit log whole
    _sweeper: asyncio.Task[None] | None = None

    @classmethod
    def create(cls, config: RuntimeConfig, store: Store) -> Governance:
        audit = AuditTrail(store, fold_window=config.audit.fold_repeats_seconds)
        cache = KeyCache(store)
        keys = KeyRegistry(store, cache, audit, set(config.groups))
        alerts = AlertDispatcher(config.budgets.alerts, store)

        def refused(request: ApiRequest, scoped: ScopedCharge, used: int, reserved: int) -> None:
            scope = scoped.scope
            audit.record_later(
                "gateway", "budget.refused", f"{scope.kind}:{scope.id}", f"{scope.limit.period} budget exhausted",
                {"request_id": request.request_id, "model": request.model, "unit": scoped.charge.unit,
                 "used": used, "reserved": reserved, "limit": scoped.charge.limit, "needed": scoped.charge.amount},
                fold=True,  # an agent retrying a capped key in a loop: counted, not written a thousand times
            )
            alerts.refused(request, scoped, used)

        spend = SpendRecorder(store)
        gate = BudgetGate(config, store, PriceBook(), on_settled=alerts.settled, on_refused=refused, spend=spend)
        sweep = min(30.0, config.budgets.reservation_ttl / 4)
        static = [p for p in config.keys.values() if p.budgets]

        async def report(session: str | None) -> list[dict[str, Any]]:
            virtual = [principal_of(k) for k in await keys.list() if k.get("budgets") and k["status"] == "active"]
            await gate.flush(give_back=True)  # this replica's leased spend and unused room, into the store first
            return await budget_status(config.budgets, store, static + virtual, session, time.time())

        ledger_days, audit_days = config.budgets.ledger_retention_days, config.audit.retention_days
        return cls(store, audit, cache, keys, AdminGuard(config.master_key), gate, alerts, spend, report, sweep,
                   ledger_days * 86400 if ledger_days is not None else None,
                   audit_days * 86400 if audit_days is not None else None)

    def routes(self) -> list[tuple[str, Callable[..., Any], list[str]]]:
        routes = [*AdminKeysApi(self.guard, self.keys).routes(),
                  *AdminReportsApi(self.guard, self.audit, self.store, self._flush_spend, self.budget_report).routes()]
        return routes

    async def _flush_spend(self) -> None:
        """Everything this replica has served into the ledger (a spend report reads it next)."""
        await self.spend.flush()
        await self.budgets.flush()

    async def start(self) -> None:
        await self.store.start()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())
        self.alerts.start()
        self.spend.start()
        if self.budgets.leases is not None:
            self.budgets.leases.start()

    async def _sweep_forever(self) -> None:
        """Charge expired reservations (crashed requests) at their reserved amounts, on every replica;
        and, once an hour, delete ledger and audit entries past their retention."""
        pruned_at = -math.inf
        while True:
            try:
                while await self.store.sweep(time.time()) >= 100:
                    pass
                if time.monotonic() - pruned_at >= PRUNE_INTERVAL:
                    await self._prune_past_retention()
                    pruned_at = time.monotonic()
            except StoreUnavailable as exc:
                log.warning("sweeping expired reservations failed; will retry: %s", exc)
            await asyncio.sleep(self.sweep_interval)

    async def _prune_past_retention(self) -> None:
        if self.ledger_retention is not None:
            cutoff = time.time() - self.ledger_retention
            while await self.store.ledger_prune(cutoff, PRUNE_STEP) >= PRUNE_STEP:
                await asyncio.sleep(0)  # a long backlog: let requests' store calls in between steps
        if self.audit_retention is not None:
            days = self.audit_retention / 86400
            deleted = await self.audit.prune(time.time() - self.audit_retention, f"retention: {days:g} days")
            if deleted:
                log.info("audit retention: deleted %d entries older than %g days", deleted, days)

    async def _close_leases(self) -> None:
        if self.budgets.leases is not None:
            await self.budgets.leases.aclose()

    async def aclose(self) -> None:
        """Stop background work, flush what can be flushed; bounded so a sick store cannot hang shutdown."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        # Leases first: their last sync gives unused room back and may cross alert thresholds.
        steps = ((self._close_leases, 5.0), (self.alerts.aclose, 5.0), (self.spend.aclose, 5.0),
                 (self.audit.drain, 5.0), (self.store.aclose, 5.0))
        for step, seconds in steps:
            try:
                await asyncio.wait_for(step(), seconds)
            except TimeoutError:
                log.warning("shutdown: %s did not finish within %.0fs; abandoned", step.__qualname__, seconds)
