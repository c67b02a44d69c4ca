"""Audit entries written off the request path (budget refusals, policy denials) under a storm.

An agent retrying a capped key in a loop makes a refusal per request; each is audited. They wait
in one bounded queue and are written in batches, so the log keeps up and memory stays bounded.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import pytest

from gateway.audit.trail import AuditTrail
from gateway.store import open_store
from gateway.store.chain import verify
from gateway.testing.upstream import UpstreamServer
from tests.conftest import GatewayFactory
from tests.governance.helpers import Admin
from tests.governance.test_audit_and_spend import config, wait_for_entries

REFUSALS = 300


async def _storm(url: str) -> list[int]:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": "Bearer sk-ops-bot-0123456789"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        replies = await asyncio.gather(*(client.post("/v1/chat/completions", json=body) for _ in range(REFUSALS)))
    return [reply.status_code for reply in replies]


def test_a_refusal_storm_is_audited_entry_by_entry_and_the_chain_holds(
    redis_prefix: str, upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(config(upstream, f"redis://127.0.0.1:6379/0?prefix={redis_prefix}"))
    with httpx.Client(base_url=gateway.url, headers={"Authorization": "Bearer sk-ops-bot-0123456789"}) as client:
        first = client.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
    assert first.status_code == 429  # the key's budget is smaller than one call's estimate

    assert asyncio.run(_storm(gateway.url)) == [429] * REFUSALS
    admin = Admin(gateway.url)
    entries = wait_for_entries(admin, REFUSALS + 1, action="budget", limit=1000)
    assert len(entries) == REFUSALS + 1
    assert {(e["action"], e["target"]) for e in entries} == {("budget.refused", "key:ops-bot")}
    assert len({e["details"]["request_id"] for e in entries}) == REFUSALS + 1
    assert admin.http.get("/admin/audit/verify").json()["ok"] is True
    admin.close()


async def test_past_its_bound_the_queue_drops_new_entries_counts_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'audit.db'}")
    await store.start()
    trail = AuditTrail(store, max_pending=10, batch=4)
    with caplog.at_level(logging.WARNING, logger="lockgate.audit"):
        for i in range(25):  # no await in between: the writer has not taken any yet
            trail.record_later("gateway", "budget.refused", f"key:k{i}", "daily budget exhausted")
        await trail.drain()
    records = await store.audit_range()
    assert [r.target for r in records] == [f"key:k{i}" for i in range(10)]  # the first ten, in order
    assert verify(records, await store.audit_head()).ok
    assert trail.dropped == 15
    warnings = [r.getMessage() for r in caplog.records if r.name == "lockgate.audit"]
    assert warnings == ["audit entries not recorded (1): more than 10 entries are waiting to be written"]  # once
    trail.record_later("gateway", "budget.refused", "key:later", "")  # room again once written
    await trail.drain()
    assert [r.target for r in await store.audit_range(after_seq=10)] == ["key:later"]
    await store.aclose()
