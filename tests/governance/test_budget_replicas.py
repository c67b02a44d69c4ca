"""THE budget test: three gateway processes on one Redis, 200 concurrent requests, a budget for 50.

The spend recorded must never pass the limit, however the requests interleave across processes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from gateway.store import open_store
from gateway.testing.upstream import UpstreamServer
from tests.conftest import MASTER_KEY, UPSTREAM_KEY
from tests.replicas import ask_budgeted, gateway_processes

KEY = "sk-replica-budget-key-0123"
PER_CALL = 500  # micro-dollars: 5 output tokens at $0.0001
AFFORDS = 50
LIMIT = PER_CALL * AFFORDS
REQUESTS = 200


@pytest.fixture
def replicas(upstream: UpstreamServer, redis_prefix: str, tmp_path: Path) -> Iterator[list[str]]:
    config = tmp_path / "lockgate.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: gpt-4o\n"
        f"    litellm_params: {{model: openai/gpt-4o-upstream, api_base: '{upstream.url}', api_key: {UPSTREAM_KEY}}}\n"
        "    model_info: {input_cost_per_token: 0, output_cost_per_token: 0.0001}\n"
        f"general_settings: {{master_key: {MASTER_KEY}}}\n"
        f"keys: [{{name: shared-bot, key: {KEY}, budgets: [{{limit_usd: {LIMIT / 1e6}, period: total}}]}}]\n"
        f"store: 'redis://127.0.0.1:6379/0?prefix={redis_prefix}'\n"
    )
    with gateway_processes(config, 3, "--log-level", "info") as urls:
        yield urls


async def _hammer(urls: list[str]) -> tuple[int, int, list[str]]:
    clients = [openai.AsyncOpenAI(base_url=f"{u}/v1", api_key=KEY, max_retries=0, timeout=180) for u in urls]

    outcomes = await asyncio.gather(*(ask_budgeted(clients[i % len(clients)], i) for i in range(REQUESTS)))
    for client in clients:
        await client.close()
    others = [o for o in outcomes if o not in ("served", "refused")]
    return outcomes.count("served"), outcomes.count("refused"), others


async def _spent(store_url: str) -> tuple[int, int, int]:
    store = open_store(store_url)
    try:
        counter = (await store.counters(["b:key:shared-bot:total:total:usd"], time.time()))[0]
        ledger = await store.ledger_range(0, time.time() + 60)
        return counter.used, counter.reserved, sum(e.charged["usd_micros"] for e in ledger)
    finally:
        await store.aclose()


def test_three_replicas_never_overspend_a_shared_budget(
    replicas: list[str], upstream: UpstreamServer, redis_prefix: str
) -> None:
    served, refused, others = asyncio.run(_hammer(replicas))
    used, reserved, ledger_total = asyncio.run(_spent(f"redis://127.0.0.1:6379/0?prefix={redis_prefix}"))
    print(f"\nserved={served} refused={refused} spent={used} micro-USD limit={LIMIT} reserved-left={reserved}")
    assert others == []
    assert served + refused == REQUESTS
    assert used <= LIMIT and ledger_total == used and reserved == 0
    assert used == served * PER_CALL
    # Every call costs exactly its reservation here, so the budget is used to the last call.
    assert served == AFFORDS
    assert len(upstream.upstream.received) == served
