"""The audit trail (who/what/when/why, tamper-evident) and spend reports, via the admin API and CLI."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import openai
import pytest
import redis

from gateway.store import open_store
from gateway.testing.upstream import UpstreamServer
from tests.conftest import MASTER_KEY, UPSTREAM_KEY, GatewayFactory
from tests.governance.helpers import Admin
from tests.governance.test_cli_keys import lockgate

MESSAGES = [{"role": "user", "content": "hi"}]


def config(upstream: UpstreamServer, store_url: str) -> str:
    return (
        "model_list:\n"
        + "".join(
            f"  - model_name: {name}\n"
            f"    litellm_params: {{model: openai/{name}-up, api_base: '{upstream.url}', api_key: {UPSTREAM_KEY}}}\n"
            f"    model_info: {{input_cost_per_token: 0.00001, output_cost_per_token: {price}}}\n"
            for name, price in (("gpt-4o", 0.0001), ("gpt-4o-mini", 0.00001))
        )
        + f"general_settings: {{master_key: {MASTER_KEY}}}\n"
        + "keys:\n"
        "  - {name: eng-bot, key: sk-eng-bot-0123456789, team: eng}\n"
        "  - {name: ops-bot, key: sk-ops-bot-0123456789, team: ops, budgets: [{limit_usd: 0.0001, period: daily}]}\n"
        + f"store: '{store_url}'\n"
    )


def wait_for_entries(admin: Admin, count: int, **params: Any) -> list[dict[str, Any]]:
    """Refusals are audited off the request path: poll (bounded) until they are there."""
    deadline = time.monotonic() + 10
    while True:
        entries = admin.http.get("/admin/audit", params=params).json()["data"]
        if len(entries) >= count or time.monotonic() > deadline:
            return entries  # type: ignore[no-any-return]
        time.sleep(0.05)  # polling the gateway's own store: no event crosses the process edge


def test_admin_actions_and_refusals_are_audited_and_edits_are_detected(
    tmp_path: Path, upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    db = tmp_path / "lockgate.db"
    gateway = gateway_factory(config(upstream, f"sqlite:///{db}"))
    admin = Admin(gateway.url)
    admin.http.headers["x-lockgate-actor"] = "alice@example.com"
    key = admin.create_key(name="temp", team="eng")
    admin.http.post(f"/admin/keys/{key['id']}/revoke", json={"reason": "contractor left"})
    ops = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="sk-ops-bot-0123456789", max_retries=0)
    with pytest.raises(openai.RateLimitError):
        ops.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]

    refusals = wait_for_entries(admin, 1, action="budget")
    assert [(e["actor"], e["action"], e["target"]) for e in refusals] == [
        ("gateway", "budget.refused", "key:ops-bot")
    ]
    assert refusals[0]["details"]["model"] == "gpt-4o"
    keys = admin.http.get("/admin/audit", params={"action": "key"}).json()["data"]
    assert [(e["actor"], e["action"], e["reason"]) for e in keys] == [
        ("master:alice@example.com", "key.create", ""), ("master:alice@example.com", "key.revoke", "contractor left")
    ]
    assert keys[0]["target"] == f"key:{key['id']}" and keys[0]["details"]["team"] == "eng"

    listed = lockgate("audit", "list", url=gateway.url)
    assert listed.returncode == 0 and "key.revoke" in listed.stdout and "contractor left" in listed.stdout
    ok = lockgate("audit", "verify", url=gateway.url)
    assert ok.returncode == 0 and "intact (3 entries)" in ok.stdout

    with sqlite3.connect(db) as raw:  # someone edits the trail behind the gateway's back
        raw.execute("UPDATE audit SET reason = 'routine rotation' WHERE seq = 2")
    edited = lockgate("audit", "verify", url=gateway.url)
    assert edited.returncode == 1 and "entry 2 was modified" in edited.stderr
    with sqlite3.connect(db) as raw:
        raw.execute("UPDATE audit SET reason = 'contractor left' WHERE seq = 2")
        raw.execute("DELETE FROM audit WHERE seq = 3")
    truncated = lockgate("audit", "verify", url=gateway.url)
    assert truncated.returncode == 1 and "ends at entry 2 but entry 3 was written" in truncated.stderr
    admin.close()


def test_redis_audit_edits_and_deletions_are_detected(
    redis_prefix: str, upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(config(upstream, f"redis://127.0.0.1:6379/0?prefix={redis_prefix}"))
    admin = Admin(gateway.url)
    for name in ("a", "b", "c"):
        admin.create_key(name=name)
    assert admin.http.get("/admin/audit/verify").json() == {
        "ok": True, "checked": 3, "problem": None, "at_seq": None, "first_seq": 1}
    raw = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    entries = raw.lrange(f"{redis_prefix}:audit", 0, -1)
    raw.lrem(f"{redis_prefix}:audit", 1, entries[1])  # delete the middle entry
    verdict = admin.http.get("/admin/audit/verify").json()
    assert not verdict["ok"] and verdict["problem"] == "entry 2 is missing (found 3 next)"
    raw.close()
    admin.close()


def test_spend_reports_group_by_team_model_and_session(
    tmp_path: Path, upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(config(upstream, f"sqlite:///{tmp_path / 'db'}"))
    eng = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="sk-eng-bot-0123456789", max_retries=0)
    costs: dict[str, int] = {}
    for model, session in (("gpt-4o", "s1"), ("gpt-4o", "s1"), ("gpt-4o-mini", "s2")):
        reply = eng.chat.completions.create(
            model=model, messages=MESSAGES, extra_headers={"x-lockgate-session-id": session}  # type: ignore[arg-type]
        )
        assert reply.usage is not None
        price_out = 100 if model == "gpt-4o" else 10
        costs[model] = costs.get(model, 0) + reply.usage.prompt_tokens * 10 + reply.usage.completion_tokens * price_out
    admin = Admin(gateway.url)
    by_model = admin.http.get("/admin/spend", params={"group_by": "model"}).json()["data"]
    assert {r["group"]: (r["requests"], r["spend_micros"]) for r in by_model} == {
        "gpt-4o": (2, costs["gpt-4o"]), "gpt-4o-mini": (1, costs["gpt-4o-mini"])
    }
    by_session = admin.http.get("/admin/spend", params={"group_by": "session"}).json()["data"]
    assert {r["group"]: r["requests"] for r in by_session} == {"s1": 2, "s2": 1}
    future = admin.http.get("/admin/spend", params={"group_by": "team", "since": time.time() + 60}).json()
    assert future["data"] == []
    bad = admin.http.get("/admin/spend", params={"group_by": "planet"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "group_by"
    for since in ("NaN", "inf"):  # floats to Python, refused by Redis: a 503 "store unreachable" for bad input
        odd = admin.http.get("/admin/spend", params={"group_by": "team", "since": since})
        assert odd.status_code == 400 and odd.json()["error"]["param"] == "since"
    for after in (str(10**30), "²"):  # SQLite refused the first, int() the second: both were 500s
        too_far = admin.http.get("/admin/audit", params={"after_seq": after})
        assert too_far.status_code == 400 and too_far.json()["error"]["param"] == "after_seq"

    table = lockgate("spend", "report", "--by", "team", "--since", "1d", url=gateway.url)
    assert table.returncode == 0, table.stderr
    assert "eng" in table.stdout and "total" in table.stdout
    assert f"${sum(costs.values()) / 1e6:,.6f}" in table.stdout
    admin.close()


def test_budget_status_shows_spent_left_and_reset_for_every_scope(
    tmp_path: Path, upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(
        config(upstream, f"sqlite:///{tmp_path / 'db'}")
        + "budgets:\n"
        "  global: [{limit_usd: 100, period: monthly}]\n"
        "  teams: {eng: [{limit_usd: 5, period: daily, max_tokens: 100000}]}\n"
        "  session: [{limit_usd: 1, period: total}]\n"
    )
    admin = Admin(gateway.url)
    virtual = admin.create_key(name="nightly", team="eng", budgets=[{"limit_usd": 2, "period": "weekly"}])
    eng = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="sk-eng-bot-0123456789", max_retries=0)
    reply = eng.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, max_tokens=50,  # type: ignore[arg-type]
        extra_headers={"x-lockgate-session-id": "s-7"},
    )
    assert reply.usage is not None
    cost = (reply.usage.prompt_tokens * 10 + reply.usage.completion_tokens * 100) / 1e6

    rows = admin.http.get("/admin/budgets", params={"session": "s-7"}).json()["data"]
    by_scope = {(r["scope"], r["id"]): r for r in rows}
    assert list(by_scope) == [("global", "global"), ("team", "eng"), ("key", "ops-bot"), ("key", virtual["id"]),
                              ("session", "s-7")]
    for scope in (("global", "global"), ("team", "eng"), ("session", "s-7")):
        row = by_scope[scope]
        assert abs(row["spent_usd"] - cost) < 1e-9 and row["reserved_usd"] == 0
        assert abs(row["remaining_usd"] - (row["limit_usd"] - cost)) < 1e-9
    team = by_scope[("team", "eng")]
    assert team["tokens_used"] == reply.usage.total_tokens and team["max_tokens"] == 100000
    assert team["period"] == "daily" and team["resets_at"] > time.time()
    assert by_scope[("session", "s-7")]["resets_at"] is None  # a total budget never resets
    assert by_scope[("key", virtual["id"])]["spent_usd"] == 0  # another key's spend is not its own
    assert [r["scope"] for r in admin.http.get("/admin/budgets").json()["data"]].count("session") == 0

    table = lockgate("budgets", "status", "--session", "s-7", url=gateway.url)
    assert table.returncode == 0, table.stderr
    assert "eng" in table.stdout and "s-7" in table.stdout
    assert f"${cost:,.6f}".rstrip("0") in table.stdout  # what the session has spent
    admin.close()


def test_spend_older_than_the_ledgers_retention_is_deleted_and_newer_spend_kept(
    tmp_path: Path, upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    db = tmp_path / "lockgate.db"
    now = time.time()

    async def spent_before() -> None:  # a gateway that ran for months: spend from 100 days and 1 day ago
        store = open_store(f"sqlite:///{db}")
        await store.start()
        await store.ledger_append_many([("long-ago", {"key": "eng-bot"}, {"usd_micros": 7}, now - 100 * 86400),
                                        ("yesterday", {"key": "ops-bot"}, {"usd_micros": 5}, now - 86400)])
        await store.aclose()

    asyncio.run(spent_before())
    gateway = gateway_factory(config(upstream, f"sqlite:///{db}") + "budgets: {ledger_retention_days: 30}\n")
    admin = Admin(gateway.url)
    deadline = time.monotonic() + 10
    while True:  # the replica's sweeper prunes at start-up, in the background: poll (bounded)
        rows = admin.http.get("/admin/spend", params={"group_by": "key", "since": now - 200 * 86400}).json()["data"]
        if len(rows) == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert [(r["group"], r["spend_micros"]) for r in rows] == [("ops-bot", 5)]
    admin.close()
