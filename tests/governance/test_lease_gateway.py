"""Leases through one real gateway: a store outage still fails closed and recovers by itself; alerts
found by a lease's sync fire once; served responses carry the key's x-ratelimit-* headers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from gateway.store import open_store
from gateway.testing.tcp_proxy import TcpProxy
from gateway.testing.upstream import UpstreamServer
from gateway.testing.webhook_receiver import WebhookReceiver
from tests.conftest import MASTER_KEY, GatewayFactory
from tests.governance.helpers import PER_CALL, budget_totals, budgeted_key_yaml

KEY = "sk-lease-gateway-0123456789"
COUNTER = "b:key:bot:total:total:usd"
REDIS = "redis://127.0.0.1:6379/0"


def config(upstream: UpstreamServer, store_url: str, affords: int, budgets: str = "{}") -> str:
    return budgeted_key_yaml(upstream, store_url, KEY, affords, budgets)


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    made = TcpProxy("127.0.0.1", 6379).start()
    yield made
    made.stop()


async def leased(redis_prefix: str) -> int:
    store = open_store(f"{REDIS}?prefix={redis_prefix}")  # straight to Redis, not through the proxy
    try:
        return (await store.counters([COUNTER], time.time()))[0].leased
    finally:
        await store.aclose()


async def ask(client: openai.AsyncOpenAI) -> openai.types.chat.ChatCompletion:
    return await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )


async def busy_until_leased(url: str, redis_prefix: str) -> None:
    """Steady load from 16 clients until the store shows the key's budget leased; then stop."""
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)
    stop = asyncio.Event()

    async def worker() -> None:
        while not stop.is_set():
            await ask(client)

    workers = [asyncio.create_task(worker()) for _ in range(16)]
    deadline = time.monotonic() + 60
    while not await leased(redis_prefix):
        assert time.monotonic() < deadline and not any(w.done() for w in workers), "no lease was taken"
        await asyncio.sleep(0.02)  # polling the store: no event crosses from the gateway to the test
    stop.set()
    await asyncio.gather(*workers)
    await client.close()


async def totals(redis_prefix: str) -> tuple[int, int, int, int]:
    return (await budget_totals(f"{REDIS}?prefix={redis_prefix}", COUNTER))[:4]


def test_with_leases_a_store_outage_still_fails_closed_and_recovers_by_itself(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, proxy: TcpProxy, redis_prefix: str
) -> None:
    gateway = gateway_factory(config(upstream, f"redis://127.0.0.1:{proxy.port}/0?prefix={redis_prefix}", 1_000_000))
    asyncio.run(busy_until_leased(gateway.url, redis_prefix))
    proxy.down()
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=KEY, max_retries=0)
    # Requests already covered by the lease may still be served; within a sync interval the gateway
    # finds the store gone, stops using its leases, and fails closed.
    deadline = time.monotonic() + 30
    while True:
        assert time.monotonic() < deadline, "the gateway kept serving while its store was down"
        try:
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=5)
        except openai.InternalServerError as error:
            assert error.status_code == 503 and "store is unreachable" in error.message
            break
    proxy.up()
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=5)
    # Every served request is charged once, leased or not, with what waited during the outage.
    assert httpx.get(f"{gateway.url}/admin/budgets", headers={"authorization": f"Bearer {MASTER_KEY}"}).status_code == 200
    served = len(upstream.upstream.received)
    assert asyncio.run(totals(redis_prefix)) == (served * PER_CALL, 0, 0, served * PER_CALL)


def test_an_alert_found_by_a_lease_sync_fires_once(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, redis_prefix: str
) -> None:
    receiver = WebhookReceiver().start()
    try:
        hook = f"http://127.0.0.1:{receiver.port}/json"
        budgets = f"{{alerts: {{thresholds: [0.25], webhooks: [{{url: '{hook}'}}]}}}}"
        gateway = gateway_factory(config(upstream, f"{REDIS}?prefix={redis_prefix}", 2000, budgets))

        async def load() -> list[dict[str, str]]:
            client = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=KEY, max_retries=0)
            replies = await asyncio.gather(*(ask_raw(client) for _ in range(800)))
            await client.close()
            return replies

        headers = asyncio.run(load())
        ((_, alert),) = receiver.wait_for(1)
        assert alert["threshold"] == 0.25 and alert["spent_usd"] >= 0.25 * 2000 * PER_CALL / 1e6
        # Served from leases or not, every response says where the key's rpm stands.
        assert all(h["x-ratelimit-limit-requests"] == "1000000" for h in headers)
        assert all(0 <= int(h["x-ratelimit-remaining-requests"]) < 1_000_000 for h in headers)
        admin = {"authorization": f"Bearer {MASTER_KEY}"}
        assert httpx.get(f"{gateway.url}/admin/budgets", headers=admin).status_code == 200
        assert asyncio.run(totals(redis_prefix)) == (800 * PER_CALL, 0, 0, 800 * PER_CALL)
        assert len(receiver.posts) == 1
    finally:
        receiver.stop()


async def ask_raw(client: openai.AsyncOpenAI) -> dict[str, str]:
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )
    return dict(raw.headers)


def test_a_lease_whose_key_changed_drains_into_the_store(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, redis_prefix: str
) -> None:
    gateway = gateway_factory(config(upstream, f"{REDIS}?prefix={redis_prefix}", 1_000_000))
    admin = httpx.Client(base_url=gateway.url, headers={"authorization": f"Bearer {MASTER_KEY}"})
    created = admin.post("/admin/keys", json={"name": "nightly", "rpm": 1_000_000,
                                              "budgets": [{"limit_usd": 100, "period": "total"}]}).json()
    counter = f"b:key:{created['id']}:total:total:usd"

    async def run() -> None:
        client = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=created["key"], max_retries=0)
        stop = asyncio.Event()

        async def worker() -> None:
            while not stop.is_set():
                await ask(client)

        workers = [asyncio.create_task(worker()) for _ in range(16)]
        store = open_store(f"{REDIS}?prefix={redis_prefix}")
        deadline = time.monotonic() + 60
        while not (await store.counters([counter], time.time()))[0].leased:
            assert time.monotonic() < deadline and not any(w.done() for w in workers), "no lease was taken"
            await asyncio.sleep(0.02)  # polling the store: no event crosses from the gateway to the test
        await store.aclose()
        # A new budget is a new plan: the busy lease is retired while its requests are in flight.
        changed = await asyncio.to_thread(admin.patch, f"/admin/keys/{created['id']}",
                                          json={"budgets": [{"limit_usd": 200, "period": "total"}]})
        assert changed.status_code == 200, changed.text
        for _ in range(50):
            await ask(client)
        stop.set()
        await asyncio.gather(*workers)
        await client.close()

    asyncio.run(run())
    assert admin.get("/admin/budgets").status_code == 200  # flushes: the retired lease is synced too
    admin.close()

    async def read() -> tuple[int, int, int, int]:
        return (await budget_totals(f"{REDIS}?prefix={redis_prefix}", counter))[:4]

    served = len(upstream.upstream.received)
    assert asyncio.run(read()) == (served * PER_CALL, 0, 0, served * PER_CALL)
