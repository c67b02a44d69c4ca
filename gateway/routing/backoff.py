"""How long to wait before trying a deployment again: exponential backoff with jitter, Retry-After first.

The n-th retry of a deployment waits `base * 2**(n-1)` seconds (capped), of which a random half is
shaved off so that many clients failing together do not come back together. An upstream's own
`retry-after-ms`/`retry-after` is a floor: the gateway never comes back earlier than it was told.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


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
