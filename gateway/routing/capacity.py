"""Per-deployment capacity: the `rpm`/`tpm` of a deployment's `litellm_params`, shared through the store.

A deployment with `rpm` or `tpm` has per-minute counters in the store, the same fixed windows and the
same atomic `reserve` as the per-key rate limits (`gateway/budgets/ratelimits.py`), under their own
names, so every replica sharing the store counts against one capacity. Before each attempt on such a
deployment the router takes one request and the request's token estimate in one store call; a
deployment that has no room is skipped like one cooling down. Deployments without `rpm`/`tpm` never
reach this module: no store call, no work. A deployment found at its `rpm` stays full until its window
turns (requests are never given back), so this replica remembers that and skips it without asking the
store again; one at its `tpm` is asked again, as settlements can free tokens.

Tokens are estimated the way OpenAI counts a request against its own tokens-per-minute limit: the
prompt at about four bytes a token (here the request body's size, a slight over-estimate for the JSON
around the text) plus the `max_tokens`/`max_completion_tokens` asked for. That is not an upper bound
(the budgets need one; capacity does not: it is a routing limit, and an upstream that is pushed past
its own limit answers 429, which starts a cooldown). After the attempt the tpm counter is settled with
the tokens the usage reports, in the background, off the response's path. A deployment with only
`rpm` is never settled: its reservation is exactly one request, which the store's sweeper folds in
once the reservation expires at the window's end, so such an attempt costs one store call in all.

A store that cannot be reached fails open: routing goes on as if the deployment had no capacity set
(the store is down for everyone, and refusing traffic for a routing limit would turn an outage of the
store into an outage of the gateway). The request records the decision, and the store is not asked
again for `RETRY_STORE` seconds: a store that hangs must not add its timeout to every request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.budgets.ratelimits import REQUESTS, TOKENS, WINDOW, RateCharge, rate_charges
from gateway.config.governance import RateLimit
from gateway.config.runtime import Deployment
from gateway.context import ApiRequest
from gateway.ids import hex_id
from gateway.log_throttle import ThrottledWarning
from gateway.providers.base import Usage
from gateway.store import Store, StoreError

log = logging.getLogger("lockgate.routing")

# OpenAI's rule of thumb for English text, and how it estimates a prompt against its own tpm.
BYTES_PER_TOKEN = 4
# Seconds during which capacity is not counted after the store failed to answer.
RETRY_STORE = 1.0


class Ticket:
    """Capacity taken for one attempt: settled with the actual tokens when the deployment has `tpm`."""

    __slots__ = ("_capacity", "reservation_id")

    def __init__(self, capacity: Capacity | None, reservation_id: str) -> None:
        self._capacity = capacity  # None: nothing to settle (rpm only)
        self.reservation_id = reservation_id

    def settle(self, usage: Usage | None, served: bool) -> None:
        """Charge the tpm counter what the attempt used, in the background (nothing to do for rpm only).

        Served without usage (a stream cut before it): the estimate stays charged. Not served: the
        request still counts against rpm, its tokens do not.
        """
        if self._capacity is None:
            return
        actual: dict[str, int] = {}
        if usage is not None:
            actual[TOKENS] = usage.input_tokens + usage.output_tokens
        elif not served:
            actual[TOKENS] = 0
        self._capacity.settle_later(self.reservation_id, actual)


@dataclass(frozen=True, slots=True)
class Full:
    """The deployment has no room this minute: which limit, and when its window turns."""

    kind: str  # "requests" or "tokens"
    limit: int
    until: float
    # The request alone needs more than the whole limit: waiting for the window will not help.
    too_large: bool = False

    @property
    def reason(self) -> str:
        if self.too_large:
            return f"request larger than its capacity ({self.limit} {self.kind} per minute)"
        return f"at capacity ({self.limit} {self.kind} per minute)"


def has_capacity_limit(deployment: Deployment) -> bool:
    return deployment.rpm is not None or deployment.tpm is not None


def estimate_tokens(request: ApiRequest) -> int:
    """The prompt at about four bytes a token, plus the output tokens the request asks for at most."""
    asked = request.body.get("max_completion_tokens") or request.body.get("max_tokens")
    output = asked if isinstance(asked, int) and asked > 0 else 0
    return -(-len(request.raw) // BYTES_PER_TOKEN) + output


class Capacity:
    def __init__(self, store: Store, deployments: Iterable[Deployment]) -> None:
        self._store = store
        # Built once: the hot path looks a limited deployment up, never builds its limit.
        self._limits = {
            d.id: RateLimit(rpm=d.rpm, tpm=d.tpm) for d in deployments if has_capacity_limit(d)
        }
        self._settling: set[asyncio.Task[None]] = set()
        # Deployments this replica saw at their rpm, until their window turns.
        self._full: dict[str, Full] = {}
        self._store_down_until = 0.0
        self._warn_settle = ThrottledWarning(log)  # a store outage would log it for every attempt

    @property
    def limited(self) -> frozenset[str]:
        """Ids of the deployments that have capacity set (the router checks nothing else)."""
        return frozenset(self._limits)

    async def take(self, request: ApiRequest, deployment: Deployment) -> Ticket | Full | None:
        """One request (and its tokens) from the deployment's minute; None: not counted (store down)."""
        limit = self._limits[deployment.id]
        now = time.time()
        full = self._full.get(deployment.id)
        if full is not None:
            if now < full.until:
                return full
            del self._full[deployment.id]
        if now < self._store_down_until:
            request.decide("lockgate.capacity.store_unavailable", deployment=deployment.id, mode="open")
            return None
        tokens = estimate_tokens(request) if limit.tpm is not None else 0
        rates = rate_charges(deployment.id, limit, tokens, now, scope="deployment")
        reservation_id = hex_id("cap_", 12)
        try:
            # Expires with the counters: unsettled, it is charged in full, which for rpm is exact.
            result = await self._store.reserve(
                reservation_id, [r.charge for r in rates], now, rates[0].reset_at + WINDOW
            )
        except StoreError as exc:
            self._store_down_until = time.time() + RETRY_STORE
            log.warning("capacity not counted for %.0fs (store unreachable): %s", RETRY_STORE, exc)
            request.decide("lockgate.capacity.store_unavailable", deployment=deployment.id, mode="open")
            return None
        if result.ok:
            return Ticket(self if limit.tpm is not None else None, reservation_id)
        assert result.refused_index is not None
        refused: RateCharge = rates[result.refused_index]
        full = Full(refused.kind, refused.limit, refused.reset_at, refused.charge.amount > refused.limit)
        if refused.kind == REQUESTS:
            self._full[deployment.id] = full
        return full

    def settle_later(self, reservation_id: str, actual: dict[str, int]) -> None:
        task = asyncio.get_running_loop().create_task(self._settle(reservation_id, actual))
        self._settling.add(task)  # held until done: the loop keeps only weak references to tasks
        task.add_done_callback(self._settling.discard)

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait (bounded) for the settlements under way: at shutdown, before the store closes."""
        if self._settling:
            await asyncio.wait(set(self._settling), timeout=timeout)

    async def _settle(self, reservation_id: str, actual: dict[str, int]) -> None:
        try:
            await self._store.settle(reservation_id, actual, time.time())
        except StoreError as exc:  # the sweeper charges the estimate when the reservation expires
            self._warn_settle("capacity reservation %s not settled: %s", reservation_id, exc)
