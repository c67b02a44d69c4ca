"""Audit retention: entries older than `audit.retention_days` are deleted by the gateway itself, the
deletion is an audit entry of its own, and what is kept still verifies; a deletion nobody recorded
does not."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from gateway.store import open_store
from gateway.testing.upstream import UpstreamServer
from tests.conftest import GatewayFactory
from tests.governance.helpers import Admin
from tests.governance.test_audit_and_spend import config
from tests.governance.test_cli_keys import lockgate

DAY = 86400.0


async def _write_history(url: str) -> None:
    """Three entries from 400 days ago, two from yesterday."""
    store = open_store(url)
    await store.start()
    now = time.time()
    await store.audit_append_many(
        [("admin", "key.create", f"key:old-{i}", "", {}, now - 400 * DAY + i) for i in range(3)]
        + [("admin", "key.revoke", f"key:new-{i}", "left", {}, now - DAY + i) for i in range(2)]
    )
    await store.aclose()


def test_entries_past_the_retention_are_deleted_on_record_and_the_rest_still_verifies(
    tmp_path: Path, upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    db = tmp_path / "lockgate.db"
    url = f"sqlite:///{db}"
    asyncio.run(_write_history(url))
    gateway = gateway_factory(config(upstream, url) + "audit: {retention_days: 365}\n")
    admin = Admin(gateway.url)
    deadline = time.monotonic() + 10
    while True:  # the gateway's sweeper prunes at start, in the background: poll its log
        entries = admin.http.get("/admin/audit").json()["data"]
        if entries and entries[0]["seq"] > 3 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert [(e["seq"], e["action"], e["target"]) for e in entries] == [
        (4, "key.revoke", "key:new-0"), (5, "key.revoke", "key:new-1"), (6, "audit.pruned", "audit"),
    ]
    assert entries[2]["actor"] == "lockgate" and entries[2]["reason"] == "retention: 365 days"
    assert entries[2]["details"]["through_seq"] == 3

    verified = lockgate("audit", "verify", url=gateway.url)
    assert verified.returncode == 0
    assert "intact (3 entries, from entry 4: retention deleted the older ones)" in verified.stdout

    with sqlite3.connect(db) as raw:  # someone removes the oldest kept entry and fixes up the anchor
        row = raw.execute("SELECT seq, hash FROM audit WHERE seq = 4").fetchone()
        raw.execute("DELETE FROM audit WHERE seq = 4")
        raw.execute("UPDATE audit_anchor SET seq = ?, hash = ? WHERE id = 1", row)
    tampered = lockgate("audit", "verify", url=gateway.url)
    assert tampered.returncode == 1
    assert "entries 1 to 4 were deleted without a retention entry saying so" in tampered.stderr
    admin.close()


def test_without_a_retention_nothing_is_deleted(
    tmp_path: Path, upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    url = f"sqlite:///{tmp_path / 'lockgate.db'}"
    asyncio.run(_write_history(url))
    gateway = gateway_factory(config(upstream, url))
    admin = Admin(gateway.url)
    admin.create_key(name="now")  # the sweeper ran at start-up (its first pass prunes, when asked to)
    assert [e["seq"] for e in admin.http.get("/admin/audit").json()["data"]] == [1, 2, 3, 4, 5, 6]
    assert admin.http.get("/admin/audit/verify").json() == {
        "ok": True, "checked": 6, "problem": None, "at_seq": None, "first_seq": 1}
    admin.close()
