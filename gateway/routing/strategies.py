"""Which deployment of a group to try first: weighted shuffle, lowest latency, or least busy.

`DeploymentStats` holds what the strategies measure, per replica: in-flight counts (least-busy) and
an exponential moving average of latency (latency-based: time to first token for streams, the
whole answer otherwise). Each strategy orders a group's available deployments; the router walks
that order, so the rest are the next choices when the first fails.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import get_args

from gateway.config.runtime import Deployment
from gateway.config.schema import RoutingStrategy

SIMPLE_SHUFFLE = "simple-shuffle"
LATENCY = "latency-based-routing"
LEAST_BUSY = "least-busy"
IMPLEMENTED = frozenset({SIMPLE_SHUFFLE, LATENCY, LEAST_BUSY})
KNOWN = frozenset(get_args(RoutingStrategy))

# Weight of the newest sample in the moving average: recent enough to notice a provider slowing
# down within a handful of requests, smooth enough not to flap on one slow answer.
_ALPHA = 0.3


class DeploymentStats:
    """In-flight counts and latency averages, keyed by deployment id."""

    __slots__ = ("in_flight", "latency")

    def __init__(self) -> None:
        self.in_flight: dict[str, int] = {}
        self.latency: dict[str, float] = {}

    def started(self, deployment_id: str) -> None:
        self.in_flight[deployment_id] = self.in_flight.get(deployment_id, 0) + 1

    def ended(self, deployment_id: str) -> None:
        self.in_flight[deployment_id] -= 1

    def observe(self, deployment_id: str, seconds: float) -> None:
        previous = self.latency.get(deployment_id)
        self.latency[deployment_id] = (
            seconds if previous is None else previous + _ALPHA * (seconds - previous)
        )


def order(
    strategy: str, deployments: Sequence[Deployment], stats: DeploymentStats, rng: random.Random
) -> Sequence[Deployment]:
    """The deployments in the order the strategy would try them."""
    if len(deployments) < 2:
        return deployments
    if strategy == LEAST_BUSY:
        busy = stats.in_flight
        return sorted(deployments, key=lambda d: (busy.get(d.id, 0), rng.random()))
    if strategy == LATENCY:
        # A deployment never measured goes first, so every deployment gets measured.
        latency = stats.latency
        return sorted(deployments, key=lambda d: (latency.get(d.id, 0.0), rng.random()))
    return weighted_shuffle(deployments, rng)


def weighted_shuffle(deployments: Sequence[Deployment], rng: random.Random) -> list[Deployment]:
    """LiteLLM's simple-shuffle: each position drawn by `weight` among those left."""
    left = list(deployments)
    ordered = []
    while len(left) > 1:
        total = sum(d.weight for d in left)
        point = rng.random() * total
        index = 0
        for index, deployment in enumerate(left):
            point -= deployment.weight
            if point < 0:
                break
        ordered.append(left.pop(index))
    ordered.extend(left)
    return ordered
