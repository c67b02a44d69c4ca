"""`lockgate audit verify` over a log longer than one read: the chain is walked a thousand entries at a
time, and an edit or a deletion past the first thousand is still found, and named."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.audit.trail import AuditTrail
from gateway.store import open_store

ENTRIES = 2_500
NOW = 1_790_000_000.0


async def test_a_long_log_is_verified_batch_by_batch_and_an_edit_deep_in_it_is_found(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    store = open_store(f"sqlite:///{db}")
    await store.start()
    for start in range(0, ENTRIES, 500):
        await store.audit_append_many(
            [("gateway", "budget.refused", f"key:k{i}", "daily", {"n": i}, NOW + i) for i in range(start, start + 500)]
        )
    trail = AuditTrail(store)
    intact = await trail.verify()
    assert (intact.ok, intact.checked) == (True, ENTRIES)

    with sqlite3.connect(db) as raw:  # someone edits an entry in the third thousand
        raw.execute("UPDATE audit SET reason = 'monthly' WHERE seq = 2100")
    edited = await trail.verify()
    assert (edited.ok, edited.checked, edited.at_seq) == (False, 2099, 2100)
    assert edited.problem == "entry 2100 was modified after it was written"

    with sqlite3.connect(db) as raw:  # put it back, then remove the newest entry
        raw.execute("UPDATE audit SET reason = 'daily' WHERE seq = 2100")
        raw.execute(f"DELETE FROM audit WHERE seq = {ENTRIES}")
    truncated = await trail.verify()
    assert (truncated.ok, truncated.checked) == (False, ENTRIES - 1)
    assert truncated.problem == f"the log ends at entry {ENTRIES - 1} but entry {ENTRIES} was written"
    await store.aclose()
