"""This replica's leases (`lease.py`), one per busy plan, and their syncs with the store.

Every `interval` (`budgets.lease_interval`, 50 ms by default) one background tick syncs every lease
that has something to say: the spend of the requests settled since the last sync (with their
ledger entries), room to give back, more room wanted, or a renewal of its expiry. The store
group-commits the syncs of one tick into one script call (Redis) or one transaction (SQLite), so a
busy replica makes about `1 / interval` store calls per second for all its requests. A lease
running low, or holding room its counters can no longer spare, is synced at once, off the request
path.

Consistency: the counters' `used` in the store trails this replica's spend by at most one interval
(plus the sync's round trip); until then that spend is covered by the lease, which the store counts
as reserved. So limits are exact (never passed) at all times, and `used` is eventually exact.
`flush` makes it exact for this replica at once (budget status and spend reports call it first).

Failures: a sync the store does not answer is sent again, unchanged, until it is (the store applies
each update once), and meanwhile this replica's leases are not used: requests reserve exactly, which
fails over to `on_store_error` like before. If a replica dies, its leases are not renewed; once
they expire (`ttl`, 30 s after the last sync) the sweeper of any replica charges each in full, as
it does any reservation left unsettled: the dead replica's requests in flight at their upper
bounds, its unsynced spend, and the unused part of its leases (about `horizon` seconds of its
demand at most). At shutdown every lease is synced and its unused room given back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from gateway.budgets.lease import Lease, Moved, Sizing
from gateway.budgets.ratelimits import RateCharge
from gateway.budgets.scopes import BudgetPlan
from gateway.context import ApiRequest
from gateway.store import LeaseUpdate, Store, StoreUnavailable
from gateway.store.base import JsonDict

log = logging.getLogger("lockgate.budgets")

# A plan's lease entry is forgotten after this long without requests (once it holds nothing).
_IDLE = 10.0
# (key identity, user, session): whose requests share one lease.
Family = tuple[str, str | None, str | None]
MovedHook = Callable[[ApiRequest | None, list[Moved]], None]


class Leases:
    def __init__(self, store: Store, sizing: Sizing, on_moved: MovedHook | None = None) -> None:
        self._store = store
        self.sizing = sizing
        self._on_moved = on_moved
        self._by_family: dict[Family, Lease] = {}
        self._draining: list[Lease] = []  # retired (windows turned): synced until they hold nothing
        self._syncs: set[asyncio.Task[None]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._started = False  # the ticker runs from the first plan on: a gateway without any, never
        self._failing = False  # log a store outage once, not on every tick

    # ---- the request path

    def lease_for(self, family: Family, plan: BudgetPlan, rates: tuple[RateCharge, ...], meta: JsonDict,
                  now: float) -> Lease:
        """The plan's current lease (a new one when its windows turned or the last one was swept)."""
        lease = self._by_family.get(family)
        if lease is not None and lease.plan is plan and lease.rates is rates and not lease.dead:
            return lease
        if self._started and self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._tick_forever())
        fresh = Lease(plan, rates, meta, now)
        if lease is not None:
            fresh.inherit(lease)
            if not lease.dead:
                lease.retired = True
                self._draining.append(lease)
        self._by_family[family] = fresh
        return fresh

    def taken(self, lease: Lease, now: float) -> None:
        """After a request took from (or could not take from) `lease`: refill early if it runs low."""
        if lease.seq and not lease.syncing and now >= lease.starved_until and lease.low():
            self._sync_soon(lease)

    def report(self, lease: Lease, request: ApiRequest) -> None:
        """Alerts a sync found are reported with the next request settled on the lease (a span event)."""
        if lease.pending and self._on_moved is not None:
            pending, lease.pending, lease.pending_aged = lease.pending, [], False
            self._on_moved(request, pending)

    # ---- syncing

    def start(self) -> None:
        self._started = True

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sizing.interval)
            try:
                await self.sync_all(give_back=False)
            except Exception:  # a bug here must not stop the syncs for good
                log.exception("lease sync tick failed")

    async def sync_all(self, give_back: bool) -> None:
        now = time.time()
        work: list[tuple[Lease, LeaseUpdate]] = []
        for lease in [*self._by_family.values(), *self._draining]:
            self._age_pending(lease)
            if lease.syncing:
                continue
            update = lease.next_update(now, self.sizing, give_back)
            if update is not None:
                work.append((lease, update))
        if work:
            # Shielded: stopping the ticker (shutdown) must not cut a sync off half way; `flush` waits for it.
            await asyncio.shield(asyncio.gather(*(self._start_sync(lease, update) for lease, update in work)))
        self._draining = [d for d in self._draining if not d.idle(now, 0.0)]
        for family in [f for f, lease in self._by_family.items() if lease.idle(now, _IDLE)]:
            del self._by_family[family]

    def _age_pending(self, lease: Lease) -> None:
        if not lease.pending:
            return
        if lease.pending_aged and self._on_moved is not None:  # no request came to report them
            pending, lease.pending, lease.pending_aged = lease.pending, [], False
            self._on_moved(None, pending)
        else:
            lease.pending_aged = True

    def _sync_soon(self, lease: Lease) -> None:
        update = lease.next_update(time.time(), self.sizing, give_back=False)
        if update is not None:
            self._start_sync(lease, update)

    def _start_sync(self, lease: Lease, update: LeaseUpdate) -> asyncio.Task[None]:
        lease.syncing = True  # from now: one update of a lease at a time, in order
        task = asyncio.get_running_loop().create_task(self._sync(lease, update))
        self._syncs.add(task)  # held until done (the loop keeps only weak references), and for `flush`
        task.add_done_callback(self._syncs.discard)
        return task

    async def _sync(self, lease: Lease, update: LeaseUpdate) -> None:
        try:
            result = await self._store.lease(update, time.time())
        except asyncio.CancelledError:
            lease.failed(update)  # it may have been applied or not: sent again, applied at most once
            raise
        except StoreUnavailable as exc:
            lease.failed(update)
            if not self._failing:
                log.warning("lease sync failed, leases unused until the store answers: %s", exc)
            self._failing = True
            return
        finally:
            lease.syncing = False
        if self._failing:
            log.warning("lease sync works again")
        self._failing = False
        if result.status == "gone":
            log.warning("lease %s expired in the store and was charged in full there", lease.id)
        moved = lease.applied(update, result, time.time(), self.sizing.interval)
        if moved:
            lease.pending.extend(moved)
        if lease.crowded(self.sizing.headroom):
            self._sync_soon(lease)  # give the room back now: someone close to the limit may need it

    async def flush(self, give_back: bool) -> None:
        """Sync every lease now (after the syncs under way): this replica's spend is then in the store.

        `give_back`: also return all unused room, so the store's `reserved` is only requests in flight.
        """
        for _ in range(2):  # a second pass sends what waited behind an update sent again
            while self._syncs:
                await asyncio.wait(set(self._syncs))
            await self.sync_all(give_back)

    async def aclose(self) -> None:
        self._started = False
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        await self.flush(give_back=True)
