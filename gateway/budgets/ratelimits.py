"""Requests and tokens per minute per key, as counters in the same reservation as the budgets.

Fixed one-minute windows shared by every replica through the store: a burst at a window's edge can
reach twice the rate for a moment, the usual trade for one counter per limit. Refusals carry the
headers OpenAI sends (`x-ratelimit-limit-requests`, `-remaining-`, `-reset-`, and the same for
tokens) and a `retry-after` until the window turns; served responses carry the same headers, from
the counters' state right after this request's reservation (no extra store call). The same counters,
under `scope="deployment"`, hold a deployment's capacity (`gateway/routing/capacity.py`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.config.governance import RateLimit
from gateway.store import Charge, CounterState

REQUESTS = "requests"
TOKENS = "tokens"
WINDOW = 60.0


@dataclass(frozen=True, slots=True)
class RateCharge:
    charge: Charge
    kind: str  # "requests" or "tokens"
    limit: int
    reset_at: float


def rate_charges(
    key: str, limit: RateLimit | None, tokens: int, now: float, scope: str = "key"
) -> list[RateCharge]:
    """The charges for one request on `key`'s current minute; `scope` names whose counters they are
    ("key", or "deployment" for a deployment's capacity), so the two never share a counter."""
    if limit is None:
        return []
    start = math.floor(now / WINDOW) * WINDOW
    reset = start + WINDOW
    base = f"rl:{scope}:{key}:{int(start)}"
    out = []
    if limit.rpm is not None:
        out.append(RateCharge(Charge(f"{base}:rpm", 1, REQUESTS, limit.rpm, reset + WINDOW), REQUESTS, limit.rpm, reset))
    if limit.tpm is not None:
        out.append(RateCharge(Charge(f"{base}:tpm", tokens, TOKENS, limit.tpm, reset + WINDOW), TOKENS, limit.tpm, reset))
    return out


class RatePlans:
    """`rate_charges`, with the counters worked out once per key and minute (amounts filled per request)."""

    def __init__(self) -> None:
        # Per key: the minute's start, the limit, and that minute's charges (amounts 0).
        self._last: dict[str, tuple[float, RateLimit, tuple[RateCharge, ...]]] = {}

    def templates(self, key: str, limit: RateLimit | None, now: float) -> tuple[RateCharge, ...]:
        """The key's charges this minute with amount 0; the same object all minute (a lease's plan)."""
        if limit is None:
            return ()
        start = math.floor(now / WINDOW) * WINDOW
        cached = self._last.get(key)
        # An equal limit (a virtual key read again) keeps the same charges: a lease's plan is this object.
        if cached is None or cached[0] != start or (cached[1] is not limit and cached[1] != limit):
            if len(self._last) >= 10_000:
                self._last.clear()
            cached = self._last[key] = (start, limit, tuple(rate_charges(key, limit, 0, now)))
        return cached[2]

    @staticmethod
    def fill(templates: tuple[RateCharge, ...], tokens: int) -> list[RateCharge]:
        """One request's charges: one request, and its tokens."""
        return [RateCharge(Charge(c.counter, 1 if r.kind == REQUESTS else tokens, c.unit, c.limit, c.expires_at),
                           r.kind, r.limit, r.reset_at) for r in templates for c in (r.charge,)]

    def charges(self, key: str, limit: RateLimit | None, tokens: int, now: float) -> list[RateCharge]:
        return self.fill(self.templates(key, limit, now), tokens)


def refusal_headers(charges: list[RateCharge], states: tuple[CounterState, ...], now: float) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers for the key's limits, from the counters' current state."""
    headers: dict[str, str] = {}
    by_counter = {s.counter: s for s in states}
    for rc in charges:
        state = by_counter.get(rc.charge.counter)
        taken = (state.used + state.reserved) if state else 0
        headers[f"x-ratelimit-limit-{rc.kind}"] = str(rc.limit)
        headers[f"x-ratelimit-remaining-{rc.kind}"] = str(max(0, rc.limit - taken))
        headers[f"x-ratelimit-reset-{rc.kind}"] = f"{max(0.0, rc.reset_at - now):.3f}s"
    return headers
