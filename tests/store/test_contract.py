"""One contract for every store: each test runs against a real SQLite file and the real Redis."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.store import Charge, Store, StoreUnavailable, VersionConflict, open_store
from gateway.store.chain import GENESIS, PRUNED, verify
from tests.store.conftest import StoreFactory

# A day ahead of the real clock: Redis expires keys by its own clock, and the suite may run long.
NOW = time.time() + 86400


# ---------------------------------------------------------------- documents


async def test_documents_are_versioned_and_compare_and_set(store: Store) -> None:
    assert await store.doc_get("keys", "a", NOW) is None
    first = await store.doc_put("keys", "a", {"name": "alpha", "n": 1}, NOW, expect_version=0)
    assert first.version == 1
    with pytest.raises(VersionConflict) as conflict:
        await store.doc_put("keys", "a", {"name": "again"}, NOW, expect_version=0)
    assert conflict.value.found == 1
    second = await store.doc_put("keys", "a", {"name": "beta"}, NOW, expect_version=1)
    assert second.version == 2
    with pytest.raises(VersionConflict):
        await store.doc_put("keys", "a", {"name": "stale"}, NOW, expect_version=1)
    got = await store.doc_get("keys", "a", NOW)
    assert got is not None and got.value == {"name": "beta"} and got.version == 2
    assert (await store.doc_put("keys", "a", {"name": "blind"}, NOW)).version == 3

    with pytest.raises(VersionConflict):
        await store.doc_delete("keys", "a", expect_version=2)
    assert await store.doc_delete("keys", "a", expect_version=3)
    assert await store.doc_get("keys", "a", NOW) is None
    assert not await store.doc_delete("keys", "a")


async def test_documents_list_by_prefix_and_expire(store: Store) -> None:
    for key in ("s-2", "s-1", "t-1"):
        await store.doc_put("sessions", key, {"k": key}, NOW)
    await store.doc_put("sessions", "s-3", {"k": "gone"}, NOW, expires_at=NOW + 5)
    await store.doc_put("other", "s-9", {"k": "elsewhere"}, NOW)

    listed = await store.doc_list("sessions", NOW, prefix="s-")
    assert [d.key for d in listed] == ["s-1", "s-2", "s-3"]
    later = await store.doc_list("sessions", NOW + 10)
    assert [d.key for d in later] == ["s-1", "s-2", "t-1"]
    assert await store.doc_get("sessions", "s-3", NOW + 10) is None
    # An expired document can be created again as if it never existed.
    again = await store.doc_put("sessions", "s-3", {"k": "new"}, NOW + 10, expect_version=0)
    assert again.version == 1


# ---------------------------------------------------------------- counters


def budget(scope: str, amount: int, limit: int | None) -> Charge:
    return Charge(f"budget:{scope}:usd", amount, "usd_micros", limit, NOW + 3600)


async def test_reserve_is_all_or_nothing_across_scopes(store: Store) -> None:
    ok = await store.reserve("r1", [budget("team", 600, 1000), budget("key", 600, 700)], NOW, NOW + 60)
    assert ok.ok and [s.reserved for s in ok.states] == [600, 600]

    refused = await store.reserve("r2", [budget("team", 300, 1000), budget("key", 300, 700)], NOW, NOW + 60)
    assert not refused.ok and refused.refused_index == 1
    assert refused.states[1].reserved == 600
    # Nothing of the refused reservation was applied to the scope that had room.
    states = await store.counters(["budget:team:usd", "budget:key:usd"], NOW)
    assert [(s.used, s.reserved) for s in states] == [(0, 600), (0, 600)]
    assert not (await store.settle("r2", {"usd_micros": 1}, NOW)).settled


async def test_settle_charges_actual_amounts_once(store: Store) -> None:
    charges = [budget("team", 500, 1000), Charge("tokens:team", 900, "tokens", 5000), Charge("rpm:k", 1, "requests")]
    await store.reserve("r1", charges, NOW, NOW + 60, meta={"key": "k1", "model": "gpt-4o"})
    settled = await store.settle("r1", {"usd_micros": 120, "tokens": 300}, NOW + 1)
    assert settled.settled and settled.charged == (120, 300, 1)
    assert [(s.counter, s.used, s.reserved) for s in settled.states] == [
        ("budget:team:usd", 120, 0), ("tokens:team", 300, 0), ("rpm:k", 1, 0)
    ]
    again = await store.settle("r1", {"usd_micros": 999}, NOW + 2)
    assert not again.settled
    states = await store.counters(["budget:team:usd", "tokens:team", "rpm:k"], NOW + 2)
    assert [(s.used, s.reserved) for s in states] == [(120, 0), (300, 0), (1, 0)]

    ledger = await store.ledger_range(NOW, NOW + 10)
    assert len(ledger) == 1
    entry = ledger[0]
    assert entry.reservation_id == "r1" and entry.meta == {"key": "k1", "model": "gpt-4o"}
    assert entry.charged == {"usd_micros": 120, "tokens": 300, "requests": 1} and not entry.swept
    assert await store.ledger_range(NOW + 5, NOW + 10) == []


async def test_reusing_a_live_reservation_id_does_not_charge_twice(store: Store) -> None:
    await store.reserve("same", [budget("g", 400, 1000)], NOW, NOW + 60)
    again = await store.reserve("same", [budget("g", 400, 1000)], NOW, NOW + 60)
    assert again.ok and again.states[0].reserved == 400


async def test_concurrent_reservations_never_pass_the_limit(store: Store) -> None:
    # 100 callers race for a limit that affords 30 of them.
    async def one(i: int) -> bool:
        return (await store.reserve(f"c{i}", [budget("global", 10, 300), budget("k", 10, None)], NOW, NOW + 60)).ok

    results = await asyncio.gather(*(one(i) for i in range(100)))
    assert sum(results) == 30
    for i, ok in enumerate(results):
        if ok:
            await store.settle(f"c{i}", {"usd_micros": 10}, NOW)
    states = await store.counters(["budget:global:usd", "budget:k:usd"], NOW)
    assert [(s.used, s.reserved) for s in states] == [(300, 0), (300, 0)]


async def test_large_amounts_stay_exact(store: Store) -> None:
    big = 123_456_789_012_345  # ~ $123M in micro-dollars: must not turn into a float
    await store.reserve("big", [budget("g", big, None)], NOW, NOW + 60)
    settled = await store.settle("big", {"usd_micros": big - 1}, NOW)
    assert settled.states[0].used == big - 1


async def test_sweep_charges_expired_reservations_at_their_reserved_amount(store: Store) -> None:
    await store.reserve("old", [budget("g", 700, 1000)], NOW, NOW + 30, meta={"key": "k"})
    await store.reserve("live", [budget("g", 200, 1000)], NOW, NOW + 300)
    assert await store.sweep(NOW + 10) == 0
    assert await store.sweep(NOW + 60) == 1
    state = (await store.counters(["budget:g:usd"], NOW + 60))[0]
    assert (state.used, state.reserved) == (700, 200)
    assert not (await store.settle("old", {"usd_micros": 1}, NOW + 61)).settled
    ledger = await store.ledger_range(NOW, NOW + 100)
    assert [(e.reservation_id, e.swept, e.charged) for e in ledger] == [("old", True, {"usd_micros": 700})]


# ---------------------------------------------------------------- audit log


async def test_audit_log_is_a_hash_chain(store: Store) -> None:
    assert await store.audit_head() == (0, GENESIS)
    first = await store.audit_append("admin", "key.create", "key:k1", "onboarding", {"team": "eng"}, NOW)
    second = await store.audit_append("admin", "key.revoke", "key:k1", "left", {}, NOW + 1)
    assert (first.seq, second.seq) == (1, 2) and second.prev_hash == first.hash
    records = await store.audit_range()
    assert [r.action for r in records] == ["key.create", "key.revoke"]
    assert records[0].details == {"team": "eng"}
    assert verify(records, await store.audit_head()).ok
    assert [r.seq for r in await store.audit_range(after_seq=1)] == [2]


async def test_audit_prune_deletes_the_oldest_entries_and_what_is_kept_verifies_from_the_anchor(store: Store) -> None:
    await store.audit_append_many(
        [("gateway", "budget.refused", f"key:{i}", "daily", {"n": i}, NOW + i) for i in range(1, 31)]
    )
    await store.audit_append("lockgate", PRUNED, "audit", "retention", {"through_seq": 10}, NOW + 31)
    written = await store.audit_range()
    assert await store.audit_anchor() == (0, GENESIS)
    assert [await store.audit_prune(10, limit=4) for _ in range(4)] == [4, 4, 2, 0]  # steps, then nothing
    assert await store.audit_anchor() == (10, written[9].hash)
    kept = await store.audit_range()
    assert [r.seq for r in kept] == list(range(11, 32))
    assert [r.seq for r in await store.audit_range(after_seq=15, limit=3)] == [16, 17, 18]
    assert [r.seq for r in await store.audit_range(after_seq=4, limit=2)] == [11, 12]  # deleted: from the oldest kept
    appended = await store.audit_append("admin", "key.create", "key:k", "", {}, NOW + 40)
    assert (appended.seq, appended.prev_hash) == (32, kept[-1].hash)
    verdict = verify(await store.audit_range(), await store.audit_head(), await store.audit_anchor())
    assert (verdict.ok, verdict.checked, verdict.first_seq) == (True, 22, 11)


async def test_entries_deleted_from_the_front_without_a_retention_entry_fail_verification(store: Store) -> None:
    await store.audit_append_many([("admin", "key.create", f"key:{i}", "", {}, NOW + i) for i in range(1, 6)])
    assert await store.audit_prune(2) == 2
    verdict = verify(await store.audit_range(), await store.audit_head(), await store.audit_anchor())
    assert not verdict.ok and verdict.problem == "entries 1 to 2 were deleted without a retention entry saying so"


async def test_concurrent_audit_appends_form_one_chain(store: Store) -> None:
    await asyncio.gather(*(store.audit_append("a", "x", str(i), "", {}, NOW) for i in range(20)))
    records = await store.audit_range()
    assert [r.seq for r in records] == list(range(1, 21))
    assert verify(records, await store.audit_head()).ok


async def test_a_batch_of_audit_entries_is_chained_after_single_ones_and_concurrent_batches(store: Store) -> None:
    await store.audit_append("admin", "key.create", "key:k1", "", {}, NOW)
    batches = [[("gateway", "budget.refused", f"key:{b}-{i}", "daily", {"n": i}, NOW + i) for i in range(50)]
               for b in range(4)]
    written = await asyncio.gather(*(store.audit_append_many(batch) for batch in batches), store.audit_append_many([]))
    assert written[-1] == []
    records = await store.audit_range()
    assert [r.seq for r in records] == list(range(1, 202))
    assert verify(records, await store.audit_head()).ok
    # Each batch lands whole and in order: its 50 entries are consecutive in the log.
    for batch, returned in zip(batches, written, strict=False):
        first = returned[0].seq
        assert [(r.target, r.details, r.ts) for r in records[first - 1 : first + 49]] == [
            (target, details, ts) for _, _, target, _, details, ts in batch
        ]
        assert returned == records[first - 1 : first + 49]


# ---------------------------------------------------------------- cooldowns, durability, outages


async def test_cooldowns_keep_the_later_end(store: Store) -> None:
    await store.cooldown_set("dep-a", NOW + 30)
    await store.cooldown_set("dep-a", NOW + 10)
    await store.cooldown_set("dep-b", NOW + 5)
    assert await store.cooldowns(NOW) == {"dep-a": NOW + 30, "dep-b": NOW + 5}
    assert await store.cooldowns(NOW + 20) == {"dep-a": NOW + 30}


async def test_state_survives_reopening(store_url: str, store_factory: StoreFactory) -> None:
    first = store_factory(store_url)
    await first.doc_put("keys", "k", {"v": 1}, NOW)
    await first.reserve("r", [budget("g", 50, 100)], NOW, NOW + 60)
    await first.audit_append("admin", "a", "t", "", {}, NOW)
    await first.aclose()

    second = store_factory(store_url)
    await second.start()
    assert (await second.doc_get("keys", "k", NOW)) is not None
    assert (await second.settle("r", {"usd_micros": 40}, NOW)).settled
    assert (await second.audit_head())[0] == 1


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0", "sqlite:////proc/lockgate-cannot-write-here/x.db"])
async def test_an_unreachable_store_raises_store_unavailable(url: str) -> None:
    store = open_store(url, timeout=0.5)
    await store.start()  # starting never raises: the gateway must come up and report it
    try:
        with pytest.raises(StoreUnavailable):
            await store.ping()
        with pytest.raises(StoreUnavailable):
            await store.reserve("r", [budget("g", 1, 10)], NOW, NOW + 60)
    finally:
        await store.aclose()


async def test_ledger_append_records_unreserved_spend(store: Store) -> None:
    await store.ledger_append("plain", {"key": "k", "model": "m"}, {"usd_micros": 42, "tokens": 7}, NOW)
    entries = await store.ledger_range(NOW - 1, NOW + 1)
    assert [(e.reservation_id, e.meta, e.charged, e.swept) for e in entries] == [
        ("plain", {"key": "k", "model": "m"}, {"usd_micros": 42, "tokens": 7}, False)
    ]


async def test_ledger_append_many_records_a_batch_in_order(store: Store) -> None:
    await store.ledger_append_many(
        [("a", {"key": "k1"}, {"usd_micros": 1, "tokens": 2}, NOW), ("b", {"key": "k2"}, {"usd_micros": 3, "tokens": 4}, NOW + 0.5)]
    )
    entries = await store.ledger_range(NOW - 1, NOW + 1)
    assert [(e.reservation_id, e.meta["key"], e.charged["usd_micros"]) for e in entries] == [("a", "k1", 1), ("b", "k2", 3)]


async def test_ledger_prune_deletes_entries_older_than_the_cutoff_only(store: Store) -> None:
    old, cutoff = NOW - 100 * 86400, NOW - 90 * 86400
    await store.ledger_append_many([("oldest", {}, {"usd_micros": 1}, old), ("old", {}, {"usd_micros": 2}, cutoff - 1),
                                    ("edge", {}, {"usd_micros": 3}, cutoff), ("new", {}, {"usd_micros": 4}, NOW)])
    await store.reserve("settled", [budget("g", 5, 100)], NOW, NOW + 60, meta={"key": "k"})
    await store.settle("settled", {"usd_micros": 5}, NOW)  # a settlement's entry, written by the store itself
    assert await store.ledger_prune(cutoff, limit=1) == 1  # the oldest first, a step at a time
    assert [e.reservation_id for e in await store.ledger_range(old - 1, cutoff)] == ["old"]
    assert await store.ledger_prune(cutoff) == 1
    assert await store.ledger_prune(cutoff) == 0
    left = await store.ledger_range(old - 1, NOW + 1)
    assert sorted(e.reservation_id for e in left) == ["edge", "new", "settled"]
