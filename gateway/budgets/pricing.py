"""Prices and output limits per deployment, from litellm's price map (read as JSON, never imported).

litellm ships `model_prices_and_context_window_backup.json`; importing litellm to read it would cost
seconds and pull its globals into the gateway, so the file is located with `importlib.util.find_spec`
and loaded once, lazily, on first use. A deployment's `model_info.input_cost_per_token` /
`output_cost_per_token` / `max_output_tokens` override the map. Costs are micro-dollars per token.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from gateway.config.runtime import Deployment

log = logging.getLogger("lockgate.budgets")
PRICE_FILE = "model_prices_and_context_window_backup.json"
DEFAULT_MAX_OUTPUT = 4096
MICROS = 1_000_000


@dataclass(frozen=True, slots=True)
class Price:
    input_micros: float  # micro-dollars per input token
    output_micros: float  # micro-dollars per output token
    max_output_tokens: int
    known: bool = True

    def cost(self, input_tokens: int, output_tokens: int) -> int:
        """Micro-dollars, rounded up so the ledger never under-counts."""
        return math.ceil(input_tokens * self.input_micros + output_tokens * self.output_micros - 1e-9)


class PriceBook:
    def __init__(self, price_file: Path | None = None) -> None:
        self._file = price_file
        self._map: dict[str, Any] | None = None
        self._by_deployment: dict[str, Price] = {}

    def _prices(self) -> dict[str, Any]:
        if self._map is None:
            self._map = _load(self._file)
        return self._map

    def for_deployment(self, deployment: Deployment) -> Price:
        price = self._by_deployment.get(deployment.id)
        if price is None:
            price = self._resolve(deployment)
            self._by_deployment[deployment.id] = price
        return price

    def _resolve(self, d: Deployment) -> Price:
        entry: dict[str, Any] = {}
        if d.input_cost_per_token is None or d.output_cost_per_token is None or d.max_output_tokens is None:
            prices = self._prices()
            for name in (d.upstream_model, f"{d.provider}/{d.upstream_model}", d.upstream_model.split("/")[-1],
                         d.group):
                if isinstance(prices.get(name), dict):
                    entry = prices[name]
                    break
        input_cost = d.input_cost_per_token if d.input_cost_per_token is not None else entry.get("input_cost_per_token")
        output_cost = (
            d.output_cost_per_token if d.output_cost_per_token is not None else entry.get("output_cost_per_token")
        )
        known = input_cost is not None or output_cost is not None
        if not known:
            log.warning("no price for deployment %s (%s): its calls count as $0", d.id, d.upstream_model)
        max_output = d.max_output_tokens or entry.get("max_output_tokens") or entry.get("max_tokens")
        return Price(
            input_micros=float(input_cost or 0.0) * MICROS,
            output_micros=float(output_cost or 0.0) * MICROS,
            max_output_tokens=int(max_output) if isinstance(max_output, int | float) else DEFAULT_MAX_OUTPUT,
            known=known,
        )


def _load(path: Path | None) -> dict[str, Any]:
    if path is None:
        spec = importlib.util.find_spec("litellm")
        if spec is None or not spec.submodule_search_locations:
            log.warning("litellm is not installed: no price map, unpriced models count as $0")
            return {}
        path = Path(next(iter(spec.submodule_search_locations))) / PRICE_FILE
    try:
        loaded = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        log.warning("cannot read litellm's price map %s (%s): unpriced models count as $0", path, exc)
        return {}
    return loaded if isinstance(loaded, dict) else {}
