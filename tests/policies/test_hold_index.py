"""The hold index: which requests and sessions may re-attach to a hold, known without a store read.

Real stores (SQLite in a temp dir, an unreachable Redis); two `Approvals` on one store stand for two
replicas, or for one gateway before and after a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config.policies import ApprovalsSection
from gateway.policies import approvals as approvals_module
from gateway.policies.approvals import Approvals
from gateway.policies.hold_index import HoldIndex
from gateway.store import Store, open_store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'holds.db'}")
    yield opened
    await opened.aclose()


def call() -> dict[str, Any]:
    return {"id": "c1", "name": "wire_money", "arguments": "{}", "rule": "big-wires", "message": "approve it",
            "schema": None, "decision": None}


async def hold(approvals: Approvals, fingerprint: str, session_id: str | None) -> str:
    approval = await approvals.create(fingerprint=fingerprint, session_id=session_id, key="master",
                                      model="gpt-4o", deployment="d", response={"content": ""}, calls=[call()])
    return approval.id


async def test_a_restarted_gateway_knows_every_stored_hold_before_its_first_request(store: Store) -> None:
    await hold(Approvals(store, ApprovalsSection()), "fp-held", "sess-held")
    restarted = Approvals(store, ApprovalsSection()).index
    assert await restarted.may_hold_request("fp-held")
    assert await restarted.may_hold_session("sess-held")
    assert not await restarted.may_hold_request("fp-other")
    assert not await restarted.may_hold_session("sess-other")


async def test_a_hold_made_here_is_listed_at_once_even_between_refreshes(store: Store) -> None:
    approvals = Approvals(store, ApprovalsSection())
    assert not await approvals.index.may_hold_request("fp-1")  # listing read now; next one in a second
    await hold(approvals, "fp-1", "sess-1")
    assert await approvals.index.may_hold_request("fp-1")
    assert await approvals.index.may_hold_session("sess-1")
    # And the re-attach finds it through the store.
    found = await approvals.for_request("fp-1")
    assert found is not None and found.value["session_id"] == "sess-1"


async def test_a_delivered_hold_frees_its_session_but_not_its_request(store: Store) -> None:
    approvals = Approvals(store, ApprovalsSection())
    approval_id = await hold(approvals, "fp-2", "sess-2")
    decided = await approvals.decide(approval_id, "approve", by="erin")
    await approvals.delivered(decided)
    assert not await approvals.index.may_hold_session("sess-2")
    assert await approvals.index.may_hold_request("fp-2")  # a retry still gets the decision


async def test_another_replicas_hold_is_seen_once_the_listing_is_refreshed(store: Store) -> None:
    here = HoldIndex(store, refresh=0.0)
    assert not await here.may_hold_session("sess-3")
    await hold(Approvals(store, ApprovalsSection()), "fp-3", "sess-3")  # through another replica
    assert await here.may_hold_session("sess-3")
    assert await here.may_hold_request("fp-3")


async def test_loop_holds_do_not_list_their_session(store: Store) -> None:
    approvals = Approvals(store, ApprovalsSection())
    await approvals.create(fingerprint="fp-loop", session_id="sess-loop", key="master", model="gpt-4o",
                           deployment="", response=None, calls=[call()], kind="loop")
    assert await approvals.index.may_hold_request("fp-loop")
    assert not await approvals.index.may_hold_session("sess-loop")


async def test_a_listing_that_may_be_incomplete_lists_everything(store: Store) -> None:
    approvals = Approvals(store, ApprovalsSection())
    for n in range(3):
        await hold(approvals, f"fp-many-{n}", None)
    capped = HoldIndex(store, limit=2)
    assert await capped.may_hold_request("fp-never-held")
    assert await capped.may_hold_session("sess-never-held")


async def test_an_unreachable_store_lists_everything() -> None:
    down = open_store("redis://127.0.0.1:1/0", timeout=0.2)
    try:
        index = HoldIndex(down)
        assert await index.may_hold_request("fp-any")
        assert await index.may_hold_session("sess-any")
    finally:
        await down.aclose()


async def test_a_refresh_lists_again_only_when_a_hold_was_made_or_delivered_somewhere(store: Store) -> None:
    index = HoldIndex(store, refresh=0.0)
    assert not await index.may_hold_request("fp-quiet")
    # An entry that appears without the change marker moving (none of Lockgate's writers do that):
    # the refresh reads only the marker, so it is not listed.
    await store.doc_put("approval-requests", "fp-quiet", {"id": "x"}, 0.0)
    assert not await index.may_hold_request("fp-quiet")
    # Another replica makes a hold: the marker moves, the next refresh lists everything again.
    await hold(Approvals(store, ApprovalsSection()), "fp-elsewhere", None)
    assert await index.may_hold_request("fp-elsewhere")
    assert await index.may_hold_request("fp-quiet")


async def test_a_hold_whose_request_is_cancelled_mid_write_is_still_stored_whole(store: Store) -> None:
    # The client hangs up while the hold is being written: the request's task is cancelled.
    approvals = Approvals(store, ApprovalsSection())
    writing = asyncio.ensure_future(hold(approvals, "fp-gone", "sess-gone"))
    await asyncio.sleep(0)  # inside its first store write
    writing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writing
    # The write goes on regardless: a retry of the request finds the hold, and the audit log has it.
    deadline = asyncio.get_running_loop().time() + 10
    while (await approvals.for_request("fp-gone") is None or not await store.audit_range()) \
            and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)  # the write runs in the store's thread: no event to wait on
    found = await approvals.for_request("fp-gone")
    assert found is not None and found.value["session_id"] == "sess-gone"
    assert [(r.action, r.target) for r in await store.audit_range()] == [("approval.hold", found.id)]


async def test_a_decision_wakes_a_waiter_after_another_waiter_of_the_same_hold_left(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A held request and its client's retry wait on one hold; the first client hangs up. The decision
    # must still wake the retry at once: before, the first waiter took the shared waker with it and
    # the retry learned of the decision only at its next poll of the store.
    monkeypatch.setattr(approvals_module, "_POLL", 60.0)  # so only the wake-up can end the wait in time
    approvals = Approvals(store, ApprovalsSection())
    approval_id = await hold(approvals, "fp-both", "sess-both")
    leaving = asyncio.ensure_future(approvals.wait(approval_id, 60))
    staying = asyncio.ensure_future(approvals.wait(approval_id, 60))
    await asyncio.sleep(0)  # both are waiting now (they reached their first store read)
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    await approvals.decide(approval_id, "approve", by="rita")
    decided = await asyncio.wait_for(staying, 10)
    assert decided is not None and decided.decided
