"""Verdicts, holds and decisions land in the store's hash-chained audit log."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

from gateway.store import open_store
from gateway.testing.upstream import UpstreamServer
from tests.conftest import GatewayFactory
from tests.policies.helpers import ask, client
from tests.policies.oversight import WIRE, Admin, hold_config, sqlite_url


async def audit_actions(url: str) -> list[tuple[str, str, str]]:
    store = open_store(url)
    await store.start()
    try:
        return [(r.actor, r.action, r.target) for r in await store.audit_range()]
    finally:
        await store.aclose()


def test_denials_holds_and_decisions_are_audited(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    url = sqlite_url(tmp_path)
    extra = "  - {name: no-drops, pattern: 'drop table', message: nope}\n"
    gateway = gateway_factory(hold_config(upstream, url, hold_window=0).replace(
        "policies:\n", "policies:\n  deny_patterns:\n" + extra, 1))
    with pytest.raises(openai.PermissionDeniedError):
        client(gateway).chat.completions.create(model="gpt-4o", messages=ask("drop table users"))
    client(gateway).chat.completions.create(model="gpt-4o", messages=ask("pay"), tools=[WIRE])
    admin = Admin(gateway)
    [pending] = admin.pending()
    admin.decide(pending["id"], "deny", by="judy", reason="no")

    wanted = {("master", "policy.deny", "no-drops"), ("master", "policy.hold", "wires-need-a-human"),
              ("lockgate", "approval.hold", pending["id"]), ("judy", "approval.deny", f"{pending['id']}/{pending['calls'][0]['id']}")}
    deadline = time.monotonic() + 10
    while True:  # verdicts are audited in the background: poll the log until they are there
        found = set(asyncio.run(audit_actions(url)))
        if wanted <= found or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert wanted <= found


def test_a_hold_verdict_is_logged_before_its_hold_and_the_decision_in_order_and_in_time(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    url = sqlite_url(tmp_path)
    gateway = gateway_factory(hold_config(upstream, url))
    admin = Admin(gateway)
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(client(gateway).chat.completions.create, model="gpt-4o", messages=ask("pay"), tools=[WIRE])
        [pending] = admin.wait_for_pending()
        assert admin.decide(pending["id"], "approve", by="judy").status_code == 200
        held.result(10)

    async def logged() -> dict[str, tuple[int, float]]:
        store = open_store(url)
        await store.start()
        try:
            return {r.action: (r.seq, r.ts) for r in await store.audit_range()}
        finally:
            await store.aclose()

    entries = asyncio.run(logged())  # the verdict was written before the hold was stored: no waiting
    # In the log's own order too: the verdict, the hold, the reviewer's decision (the verdict was
    # appended after the decision, when the held response ended).
    assert entries["policy.hold"] < entries["approval.hold"] < entries["approval.approve"]
