"""How long to wait before trying a deployment again: exponential backoff with jitter, Retry-After first.

The n-th retry of a deployment waits `base * 2**(n-1)` seconds (capped), of which a random half is
shaved off so that many clients failing together do not come back together. An upstream's own
`retry-after-ms`/`retry-after` is a floor: the gateway never comes back earlier than it was told.
`pick_retry` chooses which failed deployment to come back to: the one whose wait ends soonest.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.config.runtime import Deployment
from gateway.context import ApiRequest
from gateway.errors import UpstreamFailure


@dataclass(frozen=True, slots=True)
class Backoff:
    base: float = 0.5
    cap: float = 8.0
    # router_settings.retry_after: the least any retry waits.
    floor: float = 0.0

    def wait(self, retry: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds before retry number `retry` (1 for the first), honouring `retry_after`."""
        step = min(self.cap, self.base * (2 ** max(0, retry - 1)))
        jittered = step / 2 + rng.random() * step / 2
        return float(max(self.floor, jittered, retry_after or 0.0))


def pick_retry(
    backoff: Backoff,
    rng: random.Random,
    request: ApiRequest,
    deployments: Sequence[Deployment],
    failed: dict[str, UpstreamFailure],
    excluded: set[str],
    cooling: dict[str, float],
    retry: int,
    loop: asyncio.AbstractEventLoop,
) -> tuple[Deployment, float] | None:
    """The failed deployment to retry soonest, and the wait, if the wait ends before the deadline.

    `excluded`: deployments not to retry (the request's own exclusions and those whose breaker is open).
    """
    now_wall = time.time()
    best: tuple[Deployment, float] | None = None
    for deployment in deployments:
        failure = failed.get(deployment.id)
        if failure is None or deployment.id in excluded:
            continue
        wait = backoff.wait(retry, failure.retry_after, rng)
        if deployment.id in cooling:
            wait = max(wait, cooling[deployment.id] - now_wall)
        if best is None or wait < best[1]:
            best = (deployment, wait)
    if best is None:
        return None
    if loop.time() + best[1] >= request.deadline:
        request.decide(
            "lockgate.retry.abandoned", deployment=best[0].id, wait_s=round(best[1], 4), reason="deadline"
        )
        return None
    return best
