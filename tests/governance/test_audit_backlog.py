"""Audit entries written off the request path (budget refusals, policy denials) under a storm.

An agent retrying a capped key in a loop makes a refusal per request; each is accounted for in the
audit log. Repeats within the fold window are counted into one entry, so the store stays bounded;
what is written waits in one bounded queue and goes in batches, so the gateway's memory does too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import httpx
import pytest

from gateway.audit.folding import occurrences
from gateway.audit.trail import AuditTrail
from gateway.store import AuditRecord, open_store
from gateway.store.chain import verify
from gateway.testing.upstream import UpstreamServer
from tests.conftest import GatewayFactory
from tests.governance.helpers import Admin
from tests.governance.test_audit_and_spend import config, wait_for_entries
from tests.governance.test_cli_keys import lockgate

REFUSALS = 300


async def _storm(url: str) -> list[int]:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": "Bearer sk-ops-bot-0123456789"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        replies = await asyncio.gather(*(client.post("/v1/chat/completions", json=body) for _ in range(REFUSALS)))
    return [reply.status_code for reply in replies]


def _first_refusal(url: str) -> None:
    with httpx.Client(base_url=url, headers={"Authorization": "Bearer sk-ops-bot-0123456789"}) as client:
        first = client.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
    assert first.status_code == 429  # the key's budget is smaller than one call's estimate


def test_a_refusal_storm_is_one_entry_and_a_count_and_every_refusal_is_accounted_for(
    redis_prefix: str, upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    store = f"redis://127.0.0.1:6379/0?prefix={redis_prefix}"
    gateway = gateway_factory(config(upstream, store))  # the default window: a minute
    _first_refusal(gateway.url)
    assert asyncio.run(_storm(gateway.url)) == [429] * REFUSALS
    admin = Admin(gateway.url)
    [first] = wait_for_entries(admin, 1, action="budget")  # the first refusal, in full, at once
    admin.close()
    gateway.stop()  # a shutdown writes what the open window counted

    records = asyncio.run(_records(store))
    assert [(r.action, r.target, r.reason) for r in records] == \
        [("budget.refused", "key:ops-bot", "daily budget exhausted")] * 2
    full, folded = records
    assert full.seq == first["seq"] and "occurrences" not in full.details and full.details["model"] == "gpt-4o"
    assert folded.details["occurrences"] == REFUSALS
    assert full.ts <= folded.details["first_at"] <= folded.ts
    assert sum(occurrences(r.details) for r in records) == REFUSALS + 1

    restarted = gateway_factory(config(upstream, store))
    listed = lockgate("audit", "list", "--action", "budget", url=restarted.url)
    assert listed.returncode == 0 and f"{REFUSALS} repeats since" in listed.stdout
    assert lockgate("audit", "verify", url=restarted.url).returncode == 0


async def _records(url: str) -> list[AuditRecord]:
    store = open_store(url)
    await store.start()
    try:
        return await store.audit_range()
    finally:
        await store.aclose()


async def test_when_the_window_closes_its_repeats_are_written_and_the_next_one_is_in_full(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'audit.db'}")
    await store.start()
    trail = AuditTrail(store, fold_window=0.2)
    for i in range(5):
        trail.record_later("gateway", "budget.refused", "key:k", "daily budget exhausted", {"n": i}, fold=True)
    trail.record_later("gateway", "budget.refused", "key:other", "daily budget exhausted", fold=True)
    trail.record_later("alice", "key.revoke", "key:k", "")  # not folded: every one is written
    trail.record_later("alice", "key.revoke", "key:k", "")
    deadline = time.monotonic() + 10
    while len(records := await store.audit_range()) < 5 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)  # the window closes on the gateway's own clock: poll the store
    assert [(r.target, r.details) for r in records] == [
        ("key:k", {"n": 0}), ("key:other", {}), ("key:k", {}), ("key:k", {}),
        ("key:k", {"n": 4, "occurrences": 4, "first_at": records[4].details["first_at"]}),
    ]
    trail.record_later("gateway", "budget.refused", "key:k", "daily budget exhausted", {"n": 5}, fold=True)
    await trail.drain()
    assert (await store.audit_range(after_seq=5))[0].details == {"n": 5}  # a new window: in full again
    assert verify(await store.audit_range(), await store.audit_head()).ok
    await store.aclose()


def test_with_folding_off_a_refusal_storm_is_audited_entry_by_entry_and_the_chain_holds(
    redis_prefix: str, upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    store = f"redis://127.0.0.1:6379/0?prefix={redis_prefix}"
    gateway = gateway_factory(config(upstream, store) + "audit: {fold_repeats_seconds: 0}\n")
    _first_refusal(gateway.url)
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
