"""A client that hangs up never leaves the audit trail half a story.

The policy stage in process on a real SQLite store, as the pipeline calls it; the request's task is
cancelled as the server cancels it when its client goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from gateway.audit.trail import AuditTrail
from gateway.auth import MASTER
from gateway.config.loader import parse_config
from gateway.context import ApiRequest
from gateway.policies.approvals import Approvals
from gateway.policies.audit import VerdictAudit
from gateway.policies.engine import PolicyEngine
from gateway.policies.holds import HoldDesk
from gateway.policies.pauses import Pauses
from gateway.policies.stage import SCAN_SWITCH_INTERVAL, PolicyStage
from gateway.policies.webhook import WebhookAnnouncer
from gateway.store import Store, open_store
from gateway.store.base import AuditRecord
from tests.policies.test_loops import looping_conversation


@dataclass
class Gateway:
    stage: PolicyStage
    store: Store
    approvals: Approvals


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[Callable[[str], Gateway]]:
    made: list[Gateway] = []

    def build(policies: str) -> Gateway:
        config = parse_config(
            "model_list:\n"
            "  - model_name: gpt-4o\n"
            "    litellm_params: {model: openai/gpt-4o, api_base: 'http://127.0.0.1:9/v1', api_key: sk-up-0123456789}\n"
            "general_settings: {master_key: sk-master-0123456789}\n"
            f"store: 'sqlite:///{tmp_path / 'gateway.db'}'\n"
            f"approvals: {{hold_window: 0}}\npolicies:\n  {policies}\n"
        )
        store = open_store(config.store.url)
        approvals = Approvals(store, config.approvals)
        stage = PolicyStage(PolicyEngine(config.policies))
        stage.attach(HoldDesk(approvals, Pauses(store), WebhookAnnouncer(config.approvals.webhooks)),
                     VerdictAudit(AuditTrail(store)))
        made.append(Gateway(stage, store, approvals))
        return made[-1]

    yield build
    for gateway in made:
        await gateway.stage.aclose()
        await gateway.store.aclose()


def chat(body: dict[str, object], session: str) -> ApiRequest:
    raw = orjson.dumps(body)
    return ApiRequest("req_test", "chat", {}, orjson.loads(raw), raw, "gpt-4o", principal=MASTER, session_id=session)


async def audited(store: Store, wanted: Callable[[list[AuditRecord]], bool]) -> list[AuditRecord]:
    """The audit trail once `wanted` holds of it (the work goes on after the request is gone: no event
    to wait on but the trail itself), or as it is after 10 s."""
    deadline = asyncio.get_running_loop().time() + 10
    while not wanted(entries := await store.audit_range()) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    return entries


async def test_a_loop_hold_whose_client_hangs_up_after_the_verdict_still_gets_stored(
    make: Callable[[str], Gateway],
) -> None:
    gateway = make("loops: {note_after: 3, hold_after: 5, deny_after: 7}")

    def entries_of(session: str, found: list[AuditRecord]) -> list[str]:
        return [e.action for e in found if e.details.get("session_id") == session]

    # Hang up as soon as the hold verdict is in the trail (each look is a store read, so the request
    # moves on meanwhile); when the request was quicker than the look, try again with a new session.
    for attempt in range(20):
        session = f"s-gone-{attempt}"
        request = chat({"model": "gpt-4o", "messages": looping_conversation(5)}, session)
        asking = asyncio.ensure_future(gateway.stage.before_call(request))
        while not asking.done() and "policy.hold" not in entries_of(session, await gateway.store.audit_range()):
            pass
        asking.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asking
        if asking.cancelled():
            break
    else:
        pytest.fail("every request ended before the test could hang up after its verdict")

    # The verdict and the hold it leads to are one step: a reviewer sees the hold the log announces,
    # and the agent's retry re-attaches to it.
    entries = await audited(gateway.store, lambda found: len(entries_of(session, found)) >= 2)
    assert entries_of(session, entries) == ["policy.hold", "approval.hold"]
    held = [a for a in await gateway.approvals.list(status="pending") if a.value["session_id"] == session]
    assert len(held) == 1 and held[0].value["kind"] == "loop"


async def test_a_big_request_whose_client_hangs_up_mid_scan_still_has_its_refusal_audited(
    make: Callable[[str], Gateway],
) -> None:
    gateway = make("pii: {action: deny, responses: false}")
    text = "Write to jane.doe@example.com about invoice 4242, then report back. " * 4_000  # ~280 KB
    request = chat({"model": "gpt-4o", "messages": [{"role": "user", "content": text}] * 8}, "s-big")
    asking = asyncio.ensure_future(gateway.stage.before_call(request))
    deadline = asyncio.get_running_loop().time() + 10
    # The scan runs on the worker thread, which lowers the GIL's switch interval while it works.
    while sys.getswitchinterval() != SCAN_SWITCH_INTERVAL and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.001)
    assert sys.getswitchinterval() == SCAN_SWITCH_INTERVAL, "the scan never started on the worker"
    asking.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asking

    entries = await audited(gateway.store, lambda found: bool(found))
    assert [(e.action, e.target) for e in entries] == [("policy.deny", "pii")]
