"""Helpers for governance tests: gateway YAML with a store, a budget's totals in the store, an admin client."""

from __future__ import annotations

import time
from typing import Any

import httpx

from gateway.store import open_store
from gateway.testing.upstream import UpstreamServer
from tests.conftest import MASTER_KEY, UPSTREAM_KEY, openai_model

# A call of `budgeted_key_yaml`'s model in micro-dollars: 5 output tokens at $0.0001, inputs free.
PER_CALL = 500


def governed_yaml(upstream: UpstreamServer, store_url: str, extra: str = "", model_params: str = "") -> str:
    params = dict(p.split("=", 1) for p in model_params.split(",") if p)
    return (
        "model_list:\n"
        + openai_model("gpt-4o", upstream, **params)
        + openai_model("gpt-4o-mini", upstream)
        + f"general_settings: {{master_key: {MASTER_KEY}}}\n"
        + f"store: '{store_url}'\n"
        + extra
    )


def budgeted_key_yaml(upstream: UpstreamServer, store_url: str, key: str, affords: int, budgets: str = "{}") -> str:
    """A gateway whose key `bot` (secret `key`) has a total budget of `affords` calls of `PER_CALL`."""
    return (
        "model_list:\n"
        "  - model_name: gpt-4o\n"
        f"    litellm_params: {{model: openai/gpt-4o-upstream, api_base: '{upstream.url}', api_key: {UPSTREAM_KEY}}}\n"
        "    model_info: {input_cost_per_token: 0, output_cost_per_token: 0.0001}\n"
        f"general_settings: {{master_key: {MASTER_KEY}}}\n"
        f"keys: [{{name: bot, key: {key}, rpm: 1000000, budgets: [{{limit_usd: {affords * PER_CALL / 1e6}, period: total}}]}}]\n"
        f"store: '{store_url}'\n"
        f"budgets: {budgets}\n"
    )


async def budget_totals(store_url: str, counter: str) -> tuple[int, int, int, int, list[tuple[str, int, bool]]]:
    """(used, reserved, leased, ledger total, ledger entries as (id, usd micros, swept)) of a budget
    counter, read by a fresh connection. The ledger is read an hour ahead: a test's sweep may be dated
    in the future."""
    store = open_store(store_url)
    try:
        (state,) = await store.counters([counter], time.time())
        ledger = await store.ledger_range(0, time.time() + 3600)
        entries = [(e.reservation_id, e.charged["usd_micros"], e.swept) for e in ledger]
        return state.used, state.reserved, state.leased, sum(e[1] for e in entries), entries
    finally:
        await store.aclose()


class Admin:
    def __init__(self, base_url: str, master_key: str = MASTER_KEY) -> None:
        self.http = httpx.Client(base_url=base_url, headers={"authorization": f"Bearer {master_key}"}, timeout=30)

    def create_key(self, **fields: Any) -> dict[str, Any]:
        reply = self.http.post("/admin/keys", json={"name": "test-key", **fields})
        assert reply.status_code == 201, reply.text
        return reply.json()  # type: ignore[no-any-return]

    def close(self) -> None:
        self.http.close()
