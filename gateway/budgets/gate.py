"""Reserve-then-settle: the budget and rate-limit stage of the pipeline, one store call per phase at most.

Before routing, `reserve` puts an upper bound of the request's cost and tokens on every budget
that applies (global, team, key, user, session) and on the key's per-minute rate counters, in one
atomic store call: all fit or nothing is taken. After the call, `settle` charges what the usage says
at the serving deployment's price and releases the rest; it is idempotent, and a reservation that is
never settled (a crash) expires and is charged in full by the sweeper. A call that failed before any
byte was served is settled at zero (`release`).

A busy plan (one key's counters, far from their limits) takes its requests' upper bounds from a
lease instead (`lease.py`, `leases.py`, `budgets.leases`): no store call in either phase, the spend
reaches the store with the next sync. Whatever does not fit in the lease reserves exactly as above.
A request refused while other replicas hold leases on the refusing counter waits for them to give
their unused room back (they do within about one sync interval once the counter nears its limit)
and is checked once more, so a refusal means the room is really taken, as without leases.

If the store cannot be reached, `budgets.on_store_error` decides: `closed` (default) refuses with 503,
`open` serves the request uncounted. Both say so in a decision on the request and in the log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.budgets.lease import Lease, Moved, Sizing
from gateway.budgets.leases import Leases
from gateway.budgets.periods import describe_reset
from gateway.budgets.pricing import MICROS, Price, PriceBook
from gateway.budgets.ratelimits import RateCharge, RatePlans, refusal_headers
from gateway.budgets.scopes import TOKENS, USD, BudgetPlan, BudgetPlans, ScopedCharge, key_identity
from gateway.budgets.spend_recorder import SpendRecorder
from gateway.config.runtime import Deployment, RuntimeConfig
from gateway.context import ApiRequest
from gateway.errors import BudgetExceeded, GovernanceUnavailable, RateLimited
from gateway.ids import hex_id
from gateway.log_throttle import ThrottledWarning
from gateway.providers.base import Usage
from gateway.store import Store, StoreUnavailable

log = logging.getLogger("lockgate.budgets")

# (scope charge, counter used before, used after) for every dollar counter a settlement moved; the
# request that settled it, or None for a lease's sync no request was there to report.
SettledHook = Callable[[ApiRequest | None, list[Moved]], None]
# A lease holds this many sync intervals of its plan's demand; it expires this long after its last sync.
LEASE_HORIZON_INTERVALS = 3
LEASE_TTL = 30.0
RefusedHook = Callable[[ApiRequest, ScopedCharge, int, int], None]


@dataclass(slots=True)
class Hold:
    reservation_id: str
    budgets: list[ScopedCharge]
    rates: list[RateCharge]
    cost_micros: int
    tokens: int
    settled: bool = False
    meta: dict[str, str] = field(default_factory=dict)
    # No budget or limit applied: nothing was reserved, settlement only records the spend.
    ledger_only: bool = False
    # Taken from this lease (amounts per lease unit) instead of reserved in the store.
    lease: Lease | None = None
    taken: tuple[int, ...] = ()


class BudgetGate:
    def __init__(
        self,
        config: RuntimeConfig,
        store: Store,
        prices: PriceBook,
        on_settled: SettledHook | None = None,
        on_refused: RefusedHook | None = None,
        spend: SpendRecorder | None = None,
    ) -> None:
        self._budgets = config.budgets
        # Unenforced spend goes to the ledger in background batches; without a recorder, inline.
        self._spend = spend
        self._rate_config = config.rate_limits
        self._groups = config.groups
        self._fallbacks = dict(config.router.fallbacks)
        self._store = store
        self._prices = prices
        self._on_settled = on_settled
        self._on_refused = on_refused
        self._plans = BudgetPlans(config.budgets)
        # A store outage would log these for every request: once per interval, with a count.
        self._warn_store_down = ThrottledWarning(log)
        self._warn_settle = ThrottledWarning(log)
        self._warn_spend = ThrottledWarning(log)
        self._rate_plans = RatePlans()
        # Per model: the prices and output limits of every deployment its chain may reach.
        self._chains: dict[str, list[Price]] = {}
        # Nothing configured to enforce or record: reserve returns at once.
        self._idle = not (config.budgets.record_spend or _has_budgets(config) or _any(config.rate_limits.default))
        interval = config.budgets.lease_interval
        self.leases = Leases(
            store, Sizing(interval, LEASE_HORIZON_INTERVALS * interval, 16, LEASE_TTL), on_settled
        ) if config.budgets.leases else None

    # ---- estimate

    def _chain_deployments(self, model: str) -> list[Deployment]:
        groups = [model, *self._fallbacks.get(model, ())]
        return [d for g in groups if g in self._groups for d in self._groups[g].deployments]

    def _chain_prices(self, model: str) -> list[Price]:
        prices = self._chains.get(model)
        if prices is None:  # the config is fixed for the gate's life: resolved once per model
            prices = self._chains[model] = [self._prices.for_deployment(d) for d in self._chain_deployments(model)]
        return prices

    def estimate(self, request: ApiRequest) -> tuple[int, int]:
        """Upper bounds (micro-dollars, tokens) over every deployment the request may reach.

        Input tokens are bounded by the request's size in bytes (a token is at least one byte);
        output by `max_completion_tokens`/`max_tokens`, else the model's output limit.
        """
        prompt = len(request.raw)
        asked = request.body.get("max_completion_tokens") or request.body.get("max_tokens")
        cost, tokens = 0, prompt
        for price in self._chain_prices(request.model):
            output = 0 if request.operation == "embeddings" else price.max_output_tokens
            if isinstance(asked, int) and asked > 0:
                output = min(asked, output) if output else asked
            cost = max(cost, price.cost(prompt, output))
            tokens = max(tokens, prompt + output)
        return cost, tokens

    # ---- reserve

    async def reserve(self, request: ApiRequest) -> Hold | None:
        principal = request.principal
        assert principal is not None
        if self._idle and not principal.budgets and principal.rate_limit is None:
            return None  # nothing to enforce or record: no work at all
        now = time.time()
        user = principal.user or request.user
        cost, tokens = self.estimate(request)
        plan = self._plans.plan(principal, user, request.session_id, now)
        rate_limit = principal.rate_limit or (
            self._rate_config.default if not principal.is_master and _any(self._rate_config.default) else None
        )
        identity = key_identity(principal)
        rate_plan = self._rate_plans.templates(identity, rate_limit, now)
        meta = {k: v for k, v in (("key", identity), ("team", principal.team), ("user", user),
                                  ("session", request.session_id)) if v}
        if not plan.templates and not rate_plan:
            if not self._budgets.record_spend:
                return None  # nothing to enforce or record: no store round trip at all
            meta["model"] = request.model
            # Nothing to enforce: no round trip now, the spend is recorded at settle.
            return Hold(hex_id("res_", 12), [], [], cost, tokens, meta=meta, ledger_only=True)
        lease = None
        if self.leases is not None:
            lease = self.leases.lease_for((identity, user, request.session_id), plan, rate_plan, meta, now)
            taken = lease.take(cost, tokens, now)
            self.leases.taken(lease, now)
            if taken is not None:
                return self._from_lease(request, plan, lease, taken, cost, tokens, meta, now)
        meta = {**meta, "model": request.model}
        budgets = plan.charges(cost, tokens)
        rates = self._rate_plans.fill(rate_plan, tokens)
        hold = Hold(hex_id("res_", 12), budgets, rates, cost, tokens, meta=meta)
        charges = [b.charge for b in budgets] + [r.charge for r in rates]
        try:
            result = await self._store.reserve(
                hold.reservation_id, charges, now, now + self._budgets.reservation_ttl, meta=hold.meta
            )
            if not result.ok and self.leases is not None and result.states[result.refused_index or 0].leased:
                # Leases hold part of the room: they give it back within about a sync interval now
                # that the counter is near its limit (their next sync sees it). Then decide for good.
                await asyncio.sleep(2 * self.leases.sizing.interval)
                now = time.time()
                result = await self._store.reserve(
                    hold.reservation_id, charges, now, now + self._budgets.reservation_ttl, meta=hold.meta
                )
        except StoreUnavailable as exc:
            self._store_down(request, hold, exc)
            return None
        if not result.ok:
            assert result.refused_index is not None
            self._refuse(request, hold, result.refused_index, result.states, now)
        if rates:  # the response tells the client where its limits stand, as OpenAI's does
            request.ratelimit_headers = refusal_headers(rates, result.states, now)
        request.decide(
            "lockgate.budget.reserve", reservation=hold.reservation_id, amount_usd_micros=cost, tokens=tokens,
            scopes=plan.scope_names,
        )
        return hold

    def _from_lease(self, request: ApiRequest, plan: BudgetPlan, lease: Lease, taken: tuple[int, ...], cost: int,
                    tokens: int, meta: dict[str, str], now: float) -> Hold:
        # "lres_": taken from a lease, not a reservation in the store (the ledger entry says so too).
        hold = Hold(hex_id("lres_", 12), [], [], cost, tokens, meta={**meta, "model": request.model},
                    lease=lease, taken=taken)
        if lease.rates:
            request.ratelimit_headers = lease.rate_headers(now)
        request.decide(
            "lockgate.budget.reserve", reservation=hold.reservation_id, amount_usd_micros=cost, tokens=tokens,
            scopes=plan.scope_names, lease=True,
        )
        return hold

    def _store_down(self, request: ApiRequest, hold: Hold, exc: StoreUnavailable) -> None:
        closed = (hold.budgets and self._budgets.on_store_error == "closed") or (
            not hold.budgets and self._rate_config.on_store_error == "closed"
        )
        what = "budgets" if hold.budgets else "rate limits"
        self._warn_store_down("store unreachable, %s %s: %s", what, "enforced closed" if closed else "not enforced", exc)
        request.decide("lockgate.budget.store_unavailable", mode="closed" if closed else "open", error=str(exc))
        if closed:
            raise GovernanceUnavailable(
                f"The gateway cannot check its {what} right now: its store is unreachable, and "
                f"{'budgets' if hold.budgets else 'rate_limits'}.on_store_error is 'closed', so requests are "
                "refused rather than served uncounted. Retry shortly; the gateway reconnects by itself.",
                retry_after=2.0,
            )

    def _refuse(self, request: ApiRequest, hold: Hold, index: int, states: tuple, now: float) -> None:  # type: ignore[type-arg]
        state = states[index]
        if index >= len(hold.budgets):
            rate = hold.rates[index - len(hold.budgets)]
            retry = max(0.001, rate.reset_at - now)
            request.decide("lockgate.ratelimit.refused", limit=rate.limit, kind=rate.kind)
            unit = "requests" if rate.kind == "requests" else "tokens"
            raise RateLimited(
                f"Rate limit reached for key '{hold.meta.get('key')}': {rate.limit} {unit} per minute "
                f"(used {state.used + state.reserved}, this request needs {rate.charge.amount}). "
                f"Retry in {retry:.1f}s.",
                retry_after=retry,
                headers=refusal_headers(hold.rates, states, now),
            )
        scoped = hold.budgets[index]
        scope = scoped.scope
        request.decide(
            "lockgate.budget.refused", scope=f"{scope.kind}:{scope.id}", spent=state.used,
            reserved=state.reserved, limit=scoped.charge.limit or 0, needed=scoped.charge.amount,
            unit=scoped.charge.unit,
        )
        if self._on_refused is not None:
            self._on_refused(request, scoped, state.used, state.reserved)
        reset = describe_reset(scope.reset_at)
        if scoped.charge.unit == TOKENS:
            message = (
                f"Budget exceeded for {scope.name} ({scope.limit.period}): {state.used} of {scope.limit.max_tokens} "
                f"tokens used, {state.reserved} reserved by requests in flight; this request may need "
                f"{scoped.charge.amount}. {reset[0].upper() + reset[1:]}."
            )
        else:
            message = (
                f"Budget exceeded for {scope.name} ({scope.limit.period}): spent {_usd(state.used)} of "
                f"{_usd(scoped.charge.limit or 0)}, {_usd(state.reserved)} reserved by requests in flight; "
                f"this request may cost up to {_usd(scoped.charge.amount)}. {reset[0].upper() + reset[1:]}."
            )
        raise BudgetExceeded(message)

    # ---- settle

    async def settle(self, request: ApiRequest, hold: Hold | None, deployment: Deployment | None,
                     usage: Usage | None) -> None:
        """Charge actual usage at `deployment`'s price; without usage, charge the reservation."""
        if hold is None or hold.settled:
            return
        hold.settled = True
        if deployment is None:
            actual = {USD: 0, TOKENS: 0}  # nothing was served
        elif usage is None:
            actual = {}  # a cut stream without usage: the reservation is the best bound we have
        else:
            price = self._prices.for_deployment(deployment)
            total_tokens = usage.input_tokens + usage.output_tokens
            actual = {USD: price.cost(usage.input_tokens, usage.output_tokens), TOKENS: total_tokens}
            if price.known:
                request.cost_micros = actual[USD]
        if hold.ledger_only:
            await self._record_spend(request, hold, actual)
            return
        if hold.lease is not None:
            self._settle_leased(request, hold, hold.lease, actual)
            return
        try:
            result = await self._store.settle(hold.reservation_id, actual, time.time())
        except StoreUnavailable as exc:
            self._warn_settle("settling %s failed (it will expire and be charged in full): %s", hold.reservation_id, exc)
            request.decide("lockgate.budget.settle", reservation=hold.reservation_id, error=str(exc))
            return
        charged = actual.get(USD, hold.cost_micros)
        request.decide(
            "lockgate.budget.settle", reservation=hold.reservation_id, charged_usd_micros=charged,
            reserved_usd_micros=hold.cost_micros, tokens=actual.get(TOKENS, hold.tokens), settled=result.settled,
        )
        if result.settled and self._on_settled is not None and hold.budgets:
            moved = []
            for scoped, state, amount in zip(hold.budgets, result.states, result.charged, strict=False):
                if scoped.charge.unit == USD:
                    moved.append((scoped, state.used - amount, state.used))
            self._on_settled(request, moved)

    def _settle_leased(self, request: ApiRequest, hold: Hold, lease: Lease, actual: dict[str, int]) -> None:
        """Settled locally: the spend goes back to the lease, and to the store with its next sync."""
        charged = lease.settle(hold.taken, actual, (hold.reservation_id, hold.meta, time.time()))
        request.decide(
            "lockgate.budget.settle", reservation=hold.reservation_id, charged_usd_micros=charged.get(USD, 0),
            reserved_usd_micros=hold.cost_micros, tokens=charged.get(TOKENS, hold.tokens), settled=True, lease=True,
        )
        if self.leases is not None:
            self.leases.report(lease, request)

    async def flush(self, give_back: bool = False) -> None:
        """This replica's leased spend into the store now (status and reports read it next)."""
        if self.leases is not None:
            await self.leases.flush(give_back)

    async def _record_spend(self, request: ApiRequest, hold: Hold, actual: dict[str, int]) -> None:
        if not actual.get(USD) and not actual.get(TOKENS):
            return  # nothing served, nothing spent
        charged = {USD: actual.get(USD, hold.cost_micros), TOKENS: actual.get(TOKENS, hold.tokens)}
        if self._spend is not None:
            self._spend.add(hold.reservation_id, hold.meta, charged, time.time())
        else:
            try:
                await self._store.ledger_append(hold.reservation_id, hold.meta, charged, time.time())
            except StoreUnavailable as exc:
                self._warn_spend("spend of %s not recorded (store unreachable): %s", request.request_id, exc)
                return
        request.decide("lockgate.budget.settle", reservation=hold.reservation_id, charged_usd_micros=charged[USD],
                       tokens=charged[TOKENS], settled=True)

    async def release(self, request: ApiRequest, hold: Hold | None) -> None:
        await self.settle(request, hold, None, None)


def settle_in_background(gate: BudgetGate, request: ApiRequest, hold: Hold | None, deployment: Deployment | None,
                         usage: Usage | None, tasks: set[asyncio.Task[None]]) -> None:
    """Settle without delaying the response (used where the client is already answered)."""
    task = asyncio.get_running_loop().create_task(gate.settle(request, hold, deployment, usage))
    tasks.add(task)
    task.add_done_callback(tasks.discard)


def _has_budgets(config: RuntimeConfig) -> bool:
    b = config.budgets
    return bool(b.global_ or b.teams or b.users or b.session)


def _any(limit: object) -> bool:
    return getattr(limit, "rpm", None) is not None or getattr(limit, "tpm", None) is not None


def _usd(micros: int) -> str:
    return f"${micros / MICROS:,.6f}".rstrip("0").rstrip(".") if micros % 10_000 else f"${micros / MICROS:,.2f}"
