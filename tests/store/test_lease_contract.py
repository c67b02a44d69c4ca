"""The lease primitive's contract, on a real SQLite file and the real Redis (see `LeaseUpdate`)."""

from __future__ import annotations

import asyncio
import time

from gateway.store import Charge, LeaseUpdate, Store

NOW = time.time() + 86400  # as in test_contract.py: ahead of Redis's own clock
USD, REQ = "usd_micros", "requests"
COUNTERS = (Charge("b:g:usd", 0, USD, 10_000, NOW + 3600), Charge("rl:k:rpm", 0, REQ, 1000, NOW + 120))


def update(seq: int, *, spent: tuple[int, int] = (0, 0), release: tuple[int, int] = (0, 0),
           want: tuple[int, int] = (0, 0), min_grant: tuple[int, int] = (1, 1), lease_id: str = "lease-a",
           entries: tuple = (), expires_at: float = NOW + 30, counters: tuple[Charge, ...] = COUNTERS) -> LeaseUpdate:  # type: ignore[type-arg]
    return LeaseUpdate(lease_id, seq, counters, (USD, REQ), spent, release, want, min_grant, expires_at,
                       entries, {"key": "k"})


async def states(store: Store) -> list[tuple[int, int, int]]:
    return [(s.used, s.reserved, s.leased) for s in await store.counters([c.counter for c in COUNTERS], NOW)]


async def test_a_lease_grows_within_its_headroom_and_spends_into_used_with_its_ledger_entries(store: Store) -> None:
    first = await store.lease(update(1, want=(1000, 10)), NOW)
    # 1/17 of the room at most: 10_000 // 17 = 588 micro-dollars; 1000 // 17 = 58 >= 10 requests.
    assert (first.status, first.held, first.granted) == ("applied", (588, 10), (588, 10))
    assert await states(store) == [(0, 588, 588), (0, 10, 10)]

    entries = tuple((f"r{i}", {"key": "k", "model": "m"}, {USD: 100, REQ: 1}, NOW + i / 10) for i in range(3))
    second = await store.lease(update(2, spent=(300, 3), entries=entries), NOW)
    assert (second.status, second.held, second.granted) == ("applied", (288, 7), (0, 0))
    assert [(s.used, s.reserved, s.leased) for s in second.states] == [(300, 288, 288), (3, 7, 7)]
    ledger = await store.ledger_range(NOW - 1, NOW + 10)
    assert [(e.reservation_id, e.charged, e.swept) for e in ledger] == [(f"r{i}", {USD: 100, REQ: 1}, False) for i in range(3)]

    # The same update again (its reply was lost): not applied twice.
    again = await store.lease(update(2, spent=(300, 3), entries=entries), NOW)
    assert (again.status, again.held) == ("repeat", (288, 7))
    assert await states(store) == [(300, 288, 288), (3, 7, 7)]
    assert len(await store.ledger_range(NOW - 1, NOW + 10)) == 3

    # Everything given back: the lease is deleted, nothing stays reserved.
    closed = await store.lease(update(3, release=(288, 7)), NOW)
    assert closed.held == (0, 0) and await states(store) == [(300, 0, 0), (3, 0, 0)]
    assert (await store.lease(update(4), NOW)).status == "gone"


async def test_near_the_limit_nothing_is_granted(store: Store) -> None:
    assert (await store.reserve("big", [Charge("b:g:usd", 9000, USD, 10_000)], NOW, NOW + 60)).ok
    # Room 1000: at most 58 could be granted, below the 100 asked as a minimum: no lease at all.
    refused = await store.lease(update(1, want=(500, 10), min_grant=(100, 1)), NOW)
    assert refused.granted == (0, 0) and refused.held == (0, 0)
    assert [(s.used, s.reserved, s.leased) for s in refused.states] == [(0, 9000, 0), (0, 0, 0)]
    # A reservation reports how much of a counter is leased.
    assert (await store.lease(update(1, want=(50, 1), lease_id="lease-b"), NOW)).held == (50, 1)
    reserved = await store.reserve("small", [Charge("b:g:usd", 10, USD, 10_000)], NOW, NOW + 60)
    assert reserved.ok and reserved.states[0].leased == 50


async def test_racing_leases_never_pass_the_limit(store: Store) -> None:
    results = await asyncio.gather(*(store.lease(update(1, want=(10_000, 1000), lease_id=f"l{i}"), NOW) for i in range(40)))
    held = sum(r.held[0] for r in results)
    assert 0 < held <= 10_000
    used, reserved, leased = (await states(store))[0]
    assert (used, reserved, leased) == (0, held, held)


async def test_a_spend_above_the_lease_is_charged_without_touching_other_reservations(store: Store) -> None:
    assert (await store.reserve("other", [Charge("b:g:usd", 400, USD, 10_000)], NOW, NOW + 60)).ok
    assert (await store.lease(update(1, want=(100, 1)), NOW)).held == (100, 1)
    over = await store.lease(update(2, spent=(250, 1)), NOW)
    assert over.held == (0, 0)
    assert (await states(store))[0] == (250, 400, 0)  # the other reservation is still whole


async def test_an_expired_lease_is_swept_in_full_with_its_meta(store: Store) -> None:
    assert (await store.lease(update(1, want=(200, 5), expires_at=NOW + 30), NOW)).held == (200, 5)
    await store.lease(update(2, spent=(120, 2), entries=(("r1", {"key": "k"}, {USD: 120, REQ: 2}, NOW),),
                             expires_at=NOW + 30), NOW)
    assert await store.sweep(NOW + 10) == 0
    assert await store.sweep(NOW + 31) == 1
    # Whatever the lease still held (in flight or unused when its holder vanished) is charged.
    assert await states(store) == [(200, 0, 0), (5, 0, 0)]
    ledger = await store.ledger_range(NOW - 1, NOW + 60)
    assert [(e.reservation_id, e.meta, e.charged, e.swept) for e in ledger] == [
        ("r1", {"key": "k"}, {USD: 120, REQ: 2}, False), ("lease-a", {"key": "k"}, {USD: 80, REQ: 3}, True)
    ]
    assert (await store.lease(update(3, spent=(10, 1)), NOW + 31)).status == "gone"
    assert await states(store) == [(200, 0, 0), (5, 0, 0)]  # a gone lease charges nothing more
