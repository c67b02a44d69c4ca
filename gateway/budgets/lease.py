"""One replica's lease on one plan's counters: the room it may spend locally, and how it is sized.

A plan is the set of counters a request of one key (and user, session) reserves on in the current
windows: its budgets' dollar and token counters and the key's per-minute rate counters. Requests of
a busy plan do not each make a store round trip: the replica leases room on all of the plan's
counters at once (a `Store.lease`, which is a reservation the replica resizes) and takes each
request's upper bound from it locally; the request's actual spend is given back to the lease
locally and reaches the store with the next sync (`Leases`), ledger entries included.

What the store holds for the lease (`held`, per unit) is always at least what this replica has
promised out of it: requests in flight (`in_flight`, at their upper bounds), spend not yet synced
(`spent`, `sending`) and room being given back (`releasing`). Only the rest (`free`) is handed out.
So whatever the replicas do, used + reserved never passes a limit in the store, as with one
reservation per request.

Sizing: a lease asks for about `horizon` seconds of the plan's recent demand (requests/s times the
mean upper bound per request), and only when that is at least `MIN_REQUESTS` requests' worth: a
quiet plan never leases (each of its requests reserves exactly, as before). The store grants at most
1/(headroom + 1) of a counter's room, and nothing below one request's worth, so leases shrink with
the room left and stop well before a limit: close to it, every request reserves exactly. A lease
whose plan went quiet, whose window turned, or whose counters got close to their limits gives its
unused room back at the next sync.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.budgets.ratelimits import REQUESTS, RateCharge
from gateway.budgets.scopes import TOKENS, USD, BudgetPlan, ScopedCharge
from gateway.ids import hex_id
from gateway.store import Charge, CounterState, LeaseResult, LeaseUpdate
from gateway.store.base import JsonDict, LedgerAppend

# A lease smaller than this many requests' worth is not worth its syncs: the plan reserves exactly.
MIN_REQUESTS = 4
# Units in a fixed order; a request's amount in each: its cost, its tokens, one request.
_UNIT_ORDER = (USD, TOKENS, REQUESTS)
# (scope charge, counter used before, used after) for a dollar counter a sync moved (alerts).
Moved = tuple[ScopedCharge, int, int]


@dataclass(frozen=True, slots=True)
class Sizing:
    interval: float  # seconds between syncs
    horizon: float  # seconds of demand a lease holds
    headroom: int  # a lease takes at most 1/(headroom + 1) of a counter's room
    ttl: float  # a lease not renewed for this long expires and is swept (charged in full)


class Lease:
    """Local accounting of one lease; no I/O (`Leases` syncs it with the store)."""

    def __init__(self, plan: BudgetPlan, rates: tuple[RateCharge, ...], meta: JsonDict, now: float) -> None:
        self.id = hex_id("lease_", 12)
        self.plan = plan
        self.rates = rates
        self.meta = meta
        budget_counters = [t.charge for t in plan.templates]
        self.counters: tuple[Charge, ...] = tuple(budget_counters + [r.charge for r in rates])
        present = {c.unit for c in self.counters}
        self.units: tuple[str, ...] = tuple(u for u in _UNIT_ORDER if u in present)
        self._codes = tuple(_UNIT_ORDER.index(u) for u in self.units)
        self._unit_of = tuple(self.units.index(c.unit) for c in self.counters)
        self._header_names = tuple((f"x-ratelimit-limit-{r.kind}", str(r.limit), f"x-ratelimit-remaining-{r.kind}",
                                    f"x-ratelimit-reset-{r.kind}") for r in rates)
        n = len(self.units)
        self.held, self.in_flight, self.spent = [0] * n, [0] * n, [0] * n
        self.sending, self.releasing, self.target = [0] * n, [0] * n, [0] * n
        self.entries: list[LedgerAppend] = []
        self.states: tuple[CounterState, ...] = ()
        self.seq = 0  # 0: no lease in the store (yet, or any more)
        self.usable = True  # False after a failed sync, until one succeeds
        self.retired = False  # its windows turned: settles only, then it is closed
        self.dead = False  # swept by the store: everything it held was charged there
        self.syncing = False
        self.unacked: LeaseUpdate | None = None
        self.last_sync = now
        self.last_used = now
        self.starved_until = 0.0
        self.pending: list[Moved] = []  # alerts found by a sync, for the next request to report
        self.pending_aged = False  # a tick passed with `pending` unreported: report it without a request
        # Demand since the last sizing, and the estimates that follow it.
        self._requests = 0
        self._sums = [0] * n
        self._sized_at = now
        self.rate = 0.0
        self.mean = [0.0] * n

    # ---- the request path

    def free(self, k: int) -> int:
        return self.held[k] - self.in_flight[k] - self.spent[k] - self.sending[k] - self.releasing[k]

    def take(self, cost: int, tokens: int, now: float) -> tuple[int, ...] | None:
        """The request's amounts per unit if the lease covers them all (now taken), else None.

        Every request of the plan is counted (taken or not): that is the demand that sizes the lease.
        """
        amounts = tuple([(cost, tokens, 1)[c] for c in self._codes])
        self._requests += 1
        self.last_used = now
        sums = self._sums
        for k, amount in enumerate(amounts):
            sums[k] += amount
        if not self.usable or self.retired or self.dead or self.seq == 0:
            return None
        held, in_flight, spent, sending, releasing = self.held, self.in_flight, self.spent, self.sending, self.releasing
        for k, amount in enumerate(amounts):  # `free`, inline: this runs for every request
            if held[k] - in_flight[k] - spent[k] - sending[k] - releasing[k] < amount:
                return None
        for k, amount in enumerate(amounts):
            in_flight[k] += amount
        return amounts

    def low(self) -> bool:
        """Below a third of its target in some unit: worth a sync before the next tick."""
        for k, target in enumerate(self.target):
            if target and 3 * self.free(k) < target:
                return True
        return False

    def settle(self, taken: tuple[int, ...], actual: dict[str, int], entry: tuple[str, JsonDict, float]) -> dict[str, int]:
        """Give a request back: `actual[unit]` (the reserved amount for a unit not given) is spent."""
        charged = {unit: actual.get(unit, taken[k]) for k, unit in enumerate(self.units)}
        for k in range(len(self.units)):
            self.in_flight[k] -= taken[k]
        if self.dead:
            return charged  # the sweep charged all the lease held, this request included
        for k, unit in enumerate(self.units):
            self.spent[k] += charged[unit]
        rid, meta, now = entry
        self.entries.append((rid, meta, charged, now))
        return charged

    def rate_headers(self, now: float) -> dict[str, str]:
        """OpenAI's x-ratelimit-* headers for the key's limits: the store's room at the last sync, plus
        what this replica still holds unused (what it may take without asking)."""
        headers = {}
        offset = len(self.plan.templates)
        for i, rate in enumerate(self.rates):
            remaining = rate.limit
            if offset + i < len(self.states):
                state = self.states[offset + i]
                remaining = max(0, rate.limit - state.used - state.reserved + self.free(self._unit_of[offset + i]))
            limit_name, limit_text, remaining_name, reset_name = self._header_names[i]
            headers[limit_name] = limit_text
            headers[remaining_name] = str(remaining)
            headers[reset_name] = f"{max(0.0, rate.reset_at - now):.3f}s"
        return headers

    # ---- syncing

    def next_update(self, now: float, sizing: Sizing, give_back: bool) -> LeaseUpdate | None:
        """The update to send now (resizing the lease), or None when there is nothing to say."""
        if self.unacked is not None:
            return self.unacked  # its fate is unknown: the same update again (applied at most once)
        if self.dead:
            return None
        self._resize(now, sizing, give_back)
        n = len(self.units)
        free = [self.free(k) for k in range(n)]
        want = [max(0, t - f) for t, f in zip(self.target, free, strict=True)]
        if not any(self.target):
            release = [max(0, f) for f in free]
        else:  # hysteresis: keep up to twice the target before giving room back
            release = [max(0, f - 2 * t) for t, f in zip(self.target, free, strict=True)]
        if self.seq == 0 and not any(want) and not any(self.spent):
            return None  # no lease, none wanted
        if now < self.starved_until and not any(self.spent) and not any(release):
            return None  # the store just said no: ask again next tick, not sooner
        renew = now - self.last_sync > sizing.ttl / 4
        if not (any(self.spent) or any(want) or any(release) or renew):
            return None
        self.seq += 1
        minimum = tuple(max(1, min(w, math.ceil(m))) for w, m in zip(want, self.mean, strict=True))
        update = LeaseUpdate(
            self.id, self.seq, self.counters, self.units, tuple(self.spent), tuple(release), tuple(want), minimum,
            now + sizing.ttl, tuple(self.entries), self.meta, sizing.headroom,
        )
        self.sending, self.spent = self.spent, [0] * n
        self.releasing = release
        self.entries = []
        return update

    def _resize(self, now: float, sizing: Sizing, give_back: bool) -> None:
        elapsed = now - self._sized_at
        if give_back:
            # Asked to give everything back (status, shutdown): demand counts again from now on.
            self.rate, self._requests, self._sums, self._sized_at = 0.0, 0, [0] * len(self.units), now
        elif elapsed >= sizing.interval / 2:
            # Up at once, down by half per tick; a tick without a request is a plan gone quiet.
            rate = self._requests / elapsed
            self.rate = rate if rate > self.rate or not rate else 0.5 * self.rate + 0.5 * rate
            if self._requests:
                self.mean = [s / self._requests for s in self._sums]
            self._requests, self._sums, self._sized_at = 0, [0] * len(self.units), now
        demand = self.rate * sizing.horizon
        if give_back or self.retired or self.dead or demand < MIN_REQUESTS:
            self.target = [0] * len(self.units)
            return
        target = [math.ceil(demand * m) for m in self.mean]
        for i, state in enumerate(self.states):  # the store's rule, from what it said last
            limit = self.counters[i].limit
            if limit is not None:
                k = self._unit_of[i]
                room = limit - state.used - state.reserved + max(0, self.free(k))
                target[k] = min(target[k], room // (sizing.headroom + 1))
        if any(t < MIN_REQUESTS * m for t, m in zip(target, self.mean, strict=True)):
            target = [0] * len(self.units)
        self.target = target

    def crowded(self, headroom: int) -> bool:
        """Holding unused room the store would no longer grant (its counters got close to a limit)."""
        for i, state in enumerate(self.states):
            limit = self.counters[i].limit
            if limit is not None:
                k = self._unit_of[i]
                free = self.free(k)
                cap = (limit - state.used - state.reserved + max(0, free)) // (headroom + 1)
                if free > 0 and (free > 2 * cap or cap < MIN_REQUESTS * self.mean[k]):
                    return True
        return False

    def inherit(self, old: Lease) -> None:
        """A plan's next lease (its windows turned, or the last was swept) starts from its demand."""
        if old.units == self.units:
            self.rate, self.mean = old.rate, old.mean

    def applied(self, update: LeaseUpdate, result: LeaseResult, now: float, interval: float) -> list[Moved]:
        """Take the store's answer in; returns the dollar counters the update moved (for alerts)."""
        self.unacked = None
        self.usable = True
        self.last_sync = now
        n = len(self.units)
        if result.status == "gone":  # swept (expired): all it held was charged there
            self.dead = True
            self.held, self.sending, self.releasing, self.spent = [0] * n, [0] * n, [0] * n, [0] * n
            self.entries = []
            return []
        self.held = list(result.held)
        self.sending, self.releasing = [0] * n, [0] * n
        self.states = result.states
        if not any(self.held):
            self.seq = 0  # the store deleted it: the next lease starts afresh
        if any(w > g for w, g in zip(update.want, result.granted, strict=True)):
            self.starved_until = now + interval  # see next_update
        if result.status != "applied" or not update.spent[0] or self.units[0] != USD:
            return []
        moved = []
        for i, scoped in enumerate(self.plan.templates):
            if scoped.charge.unit == USD:
                after = result.states[i].used
                moved.append((scoped, after - update.spent[0], after))
        return moved

    def failed(self, update: LeaseUpdate) -> None:
        """The store did not answer: the update may or may not have been applied; it is sent again."""
        self.unacked = update
        self.usable = False

    def idle(self, now: float, after: float) -> bool:
        """Nothing held, promised or pending, and unused for `after` seconds: can be forgotten."""
        return (self.seq == 0 or self.dead) and not any(self.in_flight) and not any(self.spent) \
            and self.unacked is None and not self.pending and not self.syncing and now - self.last_used > after
