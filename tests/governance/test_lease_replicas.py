"""Leases across real gateway processes on one Redis: exact at the limit, returned at shutdown, charged
in full when their replica dies. Clients are the official openai SDK; the store is read directly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from gateway.budgets.gate import LEASE_TTL
from gateway.config.governance import BudgetsSection
from gateway.store import open_store
from gateway.testing.upstream import UpstreamServer
from tests.governance.helpers import PER_CALL, Admin, budget_totals, budgeted_key_yaml
from tests.replicas import ask_budgeted, gateway_replicas

KEY = "sk-lease-replicas-0123456789"
COUNTER = "b:key:bot:total:total:usd"
RESERVATION_TTL = BudgetsSection().reservation_ttl  # the config leaves it at its default


def write_config(tmp_path: Path, upstream: UpstreamServer, redis_prefix: str, affords: int) -> Path:
    path = tmp_path / "lockgate.yaml"
    path.write_text(budgeted_key_yaml(upstream, f"redis://127.0.0.1:6379/0?prefix={redis_prefix}", KEY, affords))
    return path


@pytest.fixture
def store_url(redis_prefix: str) -> str:
    return f"redis://127.0.0.1:6379/0?prefix={redis_prefix}"


async def totals(store_url: str) -> tuple[int, int, int, int, list[tuple[str, int, bool]]]:
    """(used, reserved, leased, ledger total, ledger entries as (id, usd, swept)) of the key's budget."""
    return await budget_totals(store_url, COUNTER)


def clients(urls: list[str]) -> list[openai.AsyncOpenAI]:
    return [openai.AsyncOpenAI(base_url=f"{u}/v1", api_key=KEY, max_retries=0, timeout=180) for u in urls]


@pytest.fixture
def three(upstream: UpstreamServer, redis_prefix: str, tmp_path: Path) -> Iterator[list[str]]:
    config = write_config(tmp_path, upstream, redis_prefix, affords=600)
    with gateway_replicas(config, 3) as replicas:
        yield [url for url, _ in replicas]


def test_three_replicas_spending_from_leases_serve_exactly_what_the_budget_affords(
    three: list[str], upstream: UpstreamServer, store_url: str
) -> None:
    async def hammer() -> list[str]:
        # 16 clients per replica, 900 requests in all: the run spans many syncs, so the replicas lease
        # while the budget is far from its limit and go exact close to it.
        made = clients(three)
        todo = iter(range(900))
        outcomes: list[str] = []

        async def worker(client: openai.AsyncOpenAI) -> None:
            for i in todo:
                outcomes.append(await ask_budgeted(client, i))

        await asyncio.gather(*(worker(made[w % 3]) for w in range(48)))
        for client in made:
            await client.close()
        return outcomes

    outcomes = asyncio.run(hammer())
    assert [o for o in outcomes if o not in ("served", "refused")] == []
    assert outcomes.count("served") == 600 and len(upstream.upstream.received) == 600
    for url in three:  # budget status flushes the replica's leased spend and gives its room back
        admin = Admin(url)
        assert admin.http.get("/admin/budgets").status_code == 200
        admin.close()
    used, reserved, leased, ledger, entries = asyncio.run(totals(store_url))
    assert (used, reserved, leased, ledger) == (600 * PER_CALL, 0, 0, 600 * PER_CALL)
    assert any(rid.startswith("lres_") for rid, _, _ in entries)  # some were served from leases


async def load_until_leased(url: str, store_url: str) -> tuple[int, list[asyncio.Task[str]], asyncio.Event]:
    """Start a steady load on one replica and return once the store shows a lease on the key's budget."""
    (client,) = clients([url])
    stop = asyncio.Event()
    served = 0

    async def worker(w: int) -> str:
        nonlocal served
        i = 0
        while not stop.is_set():
            outcome = await ask_budgeted(client, w * 100_000 + i)
            if outcome != "served":
                return outcome
            served += 1
            i += 1
        return "stopped"

    workers = [asyncio.create_task(worker(w)) for w in range(16)]
    store = open_store(store_url)
    try:
        deadline = time.monotonic() + 60
        while (await store.counters([COUNTER], time.time()))[0].leased == 0:
            assert time.monotonic() < deadline and not any(w.done() for w in workers), "no lease was taken"
            await asyncio.sleep(0.02)  # polling another process's state in the store: no event to await
    finally:
        await store.aclose()
    return served, workers, stop


def test_a_replica_that_stops_gives_its_lease_back_and_its_spend_is_all_recorded(
    upstream: UpstreamServer, redis_prefix: str, tmp_path: Path, store_url: str
) -> None:
    config = write_config(tmp_path, upstream, redis_prefix, affords=1_000_000)
    with gateway_replicas(config, 1) as [(url, process)]:
        async def run() -> None:
            _, workers, stop = await load_until_leased(url, store_url)
            stop.set()
            assert set(await asyncio.gather(*workers)) == {"stopped"}

        asyncio.run(run())
        process.terminate()  # SIGTERM: a graceful shutdown syncs and returns every lease
        assert process.wait(30) in (0, -15)  # uvicorn re-raises SIGTERM once its shutdown is complete
    served = len(upstream.upstream.received)
    used, reserved, leased, ledger, entries = asyncio.run(totals(store_url))
    assert (used, reserved, leased, ledger) == (served * PER_CALL, 0, 0, served * PER_CALL)
    assert not any(swept for _, _, swept in entries)


def test_a_dead_replicas_lease_expires_and_is_charged_in_full(
    upstream: UpstreamServer, redis_prefix: str, tmp_path: Path, store_url: str
) -> None:
    config = write_config(tmp_path, upstream, redis_prefix, affords=1_000_000)
    with gateway_replicas(config, 1) as [(url, process)]:
        async def run() -> None:
            _, workers, stop = await load_until_leased(url, store_url)
            process.kill()  # SIGKILL under load: nothing is synced or returned
            process.wait(30)
            stop.set()
            await asyncio.gather(*workers)

        asyncio.run(run())
    served = len(upstream.upstream.received)
    used, reserved, leased, _, _ = asyncio.run(totals(store_url))
    assert leased > 0 and reserved >= leased  # the dead replica's lease still holds its room

    async def sweep_later() -> None:  # any replica's sweeper, once the lease's expiry has passed
        store = open_store(store_url)
        try:
            # Past the lease's expiry and a reservation's: a request that reserved exactly (a lease being
            # refilled) may have been in flight too, and is charged in full the same way.
            assert await store.sweep(time.time() + max(LEASE_TTL, RESERVATION_TTL) + 1) >= 1
        finally:
            await store.aclose()

    asyncio.run(sweep_later())
    used_after, reserved_after, leased_after, ledger, entries = asyncio.run(totals(store_url))
    assert (reserved_after, leased_after) == (0, 0)
    # Charged in full: everything it served (synced or not), requests it had in flight, unused room.
    assert used_after == used + reserved == ledger and used_after >= served * PER_CALL
    swept_ids = [rid for rid, _, swept in entries if swept]
    assert any(rid.startswith("lease_") for rid in swept_ids)
    assert all(rid.startswith(("lease_", "res_")) for rid in swept_ids)
