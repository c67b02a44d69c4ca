"""Seeded random places in JSON documents and junk to put there, for the tests that send the gateway
malformed requests and the upstream's altered answers."""

from __future__ import annotations

import copy
import random
from typing import Any


def junk(rng: random.Random, pool: list[Any]) -> Any:
    return copy.deepcopy(rng.choice(pool))  # a copy: a later mutation must not reach into another


def pick(doc: Any, rng: random.Random, deeper: float) -> tuple[Any, Any] | None:
    """A random place in `doc`, as its container and key, walking down while `rng` is under `deeper`;
    None when the walk stopped at the top."""
    parent: Any = None
    key: Any = None
    node: Any = doc
    while isinstance(node, (dict, list)) and node and rng.random() < deeper:
        key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
        parent, node = node, node[key]
    return None if parent is None else (parent, key)
