"""The policy stage as the pipeline calls it: one call before routing, one after the response.

It ties the engine (verdicts), the response guard (JSON and streams) and the hold desk (approvals,
pauses). Without a hold desk a `hold` verdict is refused like a `deny`, with a message that says
the action needs a human approval this gateway cannot collect.

`before_call` may answer a request itself (an `Early` answer) instead of letting it reach the
model: a paused session, or a request that re-attaches to a held response.

The pre-call rules of a big request (a long agent conversation: models take a million tokens now)
run on a worker thread, not on the event loop. They are CPU work that never awaits: on the loop, one
3.9 MB conversation with the ten typical rules stalled every other request for ~470 ms (bench: the
big-body figures in bench/README.md). On the thread the loop keeps serving: the scan hands it the
GIL every 0.5 ms while it runs (the interpreter's switch interval, 5 ms otherwise, lowered for the
scan). With four clients asking meanwhile, ~9 small requests were answered during such a scan on the
loop, ~35 on the thread at 5 ms, ~270 at 0.5 ms (tests/policies/test_big_requests.py). One worker:
big requests queue for it rather than take more of the GIL from everyone else. Small requests stay on
the loop, where a thread hand-off would cost more than their scan. What the engine shares between
requests is the PII scan cache, whose operations are plain dict operations (a race loses an entry,
never corrupts one), and compiled CEL programs, which the C++ library evaluates without shared state.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.context import ApiRequest
from gateway.errors import PolicyViolation
from gateway.policies.approvals import Approval
from gateway.policies.audit import VerdictAudit
from gateway.policies.engine import HeldCall, PolicyEngine
from gateway.policies.guard import ResponseGuard
from gateway.policies.holds import HoldDesk
from gateway.policies.loops import Loop
from gateway.policies.replies import as_chunks
from gateway.providers.base import JsonReply, Summary, ToolCall
from gateway.shielded import settle_orphaned, shielded

# Request bodies past this size have their pre-call rules run on the worker thread (a ~64 KB
# conversation scans in ~1-2 ms, under what the hand-off and the GIL's switch interval would add).
OFF_LOOP_BYTES = 256 * 1024
# The GIL's switch interval while a big scan runs. At the default 5 ms, every time the loop wakes for
# a request's next step it could wait 5 ms for the scan to let go: small requests took ~20 ms each.
SCAN_SWITCH_INTERVAL = 0.0005



@dataclass(slots=True)
class Early:
    """An answer given before (instead of) the model call."""

    desk: HoldDesk | None
    request: ApiRequest
    body: dict[str, Any] | None = None
    approval: Approval | None = None

    async def json(self) -> bytes:
        if self.approval is not None:
            assert self.desk is not None
            return orjson.dumps(await self.desk.answer_json(self.request, self.approval))
        return orjson.dumps(self.body)

    async def stream(self) -> AsyncIterator[bytes]:
        if self.approval is not None:
            assert self.desk is not None
            async for event in self.desk.answer_stream(self.request, self.approval, text_sent=False):
                yield event
            return
        assert self.body is not None
        for event in as_chunks(self.body):
            yield event


class PolicyStage:
    def __init__(self, engine: PolicyEngine, desk: HoldDesk | None = None) -> None:
        self.engine = engine
        self._desk = desk
        self._guard = ResponseGuard(engine)
        self._inspects = engine.inspects_responses or engine.inspects_tool_calls
        self._audit: VerdictAudit | None = None
        self._worker: ThreadPoolExecutor | None = None  # made for the first big request

    def attach(self, desk: HoldDesk, audit: VerdictAudit | None = None) -> None:
        """Enable holds, pauses and the audit trail (the store is built after the engine)."""
        self._desk = desk
        self._audit = audit

    async def before_call(self, request: ApiRequest) -> Early | None:
        """pre_call: may refuse (403), rewrite the request, or answer it without the model."""
        try:
            return await self._before_call(request)
        finally:
            self._audit_new(request)

    async def _before_call(self, request: ApiRequest) -> Early | None:
        desk = self._desk
        if desk is not None:
            paused = await desk.check_pause(request)
            if paused is not None:
                return Early(desk, request, body=paused)
        loop = await self._pre_call_rules(request)
        if loop is not None and desk is not None:
            hold = await self._verdicts_then(request, lambda: desk.loop_hold(request, loop))
            held = await desk.answer_loop(request, loop, hold)
            if held is not None:
                return Early(desk, request, body=held)
        elif loop is not None:
            raise PolicyViolation(
                "loops",
                f"the agent is looping: {loop.describe()}; it needs a human to let it continue, "
                "and approvals are not enabled",
            )
        if desk is not None and (self.engine.may_hold or loop is not None):
            attached = await desk.reattach(request)
            if attached is not None:
                return Early(desk, request, approval=attached)
        return None

    async def _pre_call_rules(self, request: ApiRequest) -> Loop | None:
        if len(request.raw) <= OFF_LOOP_BYTES:
            return self.engine.before_call(request)
        if self._worker is None:
            self._worker = ThreadPoolExecutor(1, thread_name_prefix="lockgate-policy")
        job = self._worker.submit(self._scan_yielding, request)
        scan = asyncio.wrap_future(job)
        try:
            return await asyncio.shield(scan)
        except asyncio.CancelledError:
            # The client left. A scan not started yet is dropped; one under way cannot be stopped, and
            # the verdicts it makes (a denial, say) are audited when it ends, like any other request's.
            if not job.cancel():
                scan.add_done_callback(lambda done: self._scan_ended(request, done))
            raise

    def _scan_ended(self, request: ApiRequest, scan: asyncio.Future[Loop | None]) -> None:
        """A big request's scan that outlived its client: its refusal has nobody to go to, its verdicts
        go to the audit trail."""
        settle_orphaned(scan, "the pre-call rules")
        self._audit_new(request)

    def _scan_yielding(self, request: ApiRequest) -> Loop | None:
        """The pre-call rules, on the worker, handing the GIL back to the event loop every 0.5 ms."""
        # The interval is the process's, restored after: there is one worker, so no other scan changes it.
        before = sys.getswitchinterval()
        sys.setswitchinterval(SCAN_SWITCH_INTERVAL)
        try:
            return self.engine.before_call(request)
        finally:
            sys.setswitchinterval(before)

    async def after_json(self, request: ApiRequest, reply: JsonReply, deployment: str) -> JsonReply:
        """post_call and tool_call on a whole completion."""
        if not self._inspects:
            return reply
        try:
            return await self._after_json(request, reply, deployment)
        finally:
            self._audit_new(request)

    async def _after_json(self, request: ApiRequest, reply: JsonReply, deployment: str) -> JsonReply:
        body, completion, held = self._guard.check_json(request, reply)
        if held:
            if self._desk is None:
                raise _no_approvals(held[0])
            message = (completion.get("choices") or [{}])[0].get("message") or {}
            response = {"id": completion.get("id"), "model": completion.get("model"),
                        "content": message.get("content"), "usage": completion.get("usage")}
            approval = await self._hold(request, held, reply.summary.tool_calls, response, deployment)
            body = orjson.dumps(await self._desk.answer_json(request, approval))
        if body is not reply.body:
            reply = JsonReply(body, reply.summary)
        return reply

    def filter_stream(
        self, request: ApiRequest, events: AsyncIterator[bytes], deployment: str, summary: Summary | None = None
    ) -> AsyncIterator[bytes]:
        """post_call and tool_call on a stream, as it passes (`summary`: the provider's, see the guard)."""
        if not self._inspects:
            return events

        async def on_hold(request: ApiRequest, held: list[HeldCall], calls: Summary, text: str) -> AsyncIterator[bytes]:
            if self._desk is None:
                raise _no_approvals(held[0])
            response = {"id": calls.response_id, "model": calls.response_model, "content": text, "usage": None}
            approval = await self._hold(request, held, calls.tool_calls, response, deployment)
            async for event in self._desk.answer_stream(request, approval, text_sent=True):
                yield event

        return self._audited(request, self._guard.filter_stream(request, events, on_hold, summary))

    async def _audited(self, request: ApiRequest, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        try:
            async for event in events:
                yield event
        finally:
            await events.aclose()  # type: ignore[attr-defined]
            self._audit_new(request)

    def _audit_new(self, request: ApiRequest) -> None:
        """Queue the verdicts made since the last audit (the request never waits for the log)."""
        if self._audit is not None and len(request.decisions) > request.audited:
            self._audit.record(request)

    async def _hold(
        self, request: ApiRequest, held: list[HeldCall], calls: list[ToolCall], response: dict[str, Any], deployment: str,
    ) -> Approval:
        desk = self._desk
        assert desk is not None
        return await self._verdicts_then(request, lambda: desk.hold(request, held, calls, response, deployment))

    def _verdicts_then(
        self, request: ApiRequest, hold: Callable[[], Awaitable[Approval]]
    ) -> asyncio.Future[Approval]:
        """Write the request's verdicts, then store its hold, as one step a client hanging up cannot
        split: cut in between, the log had a hold verdict and no hold (bench/soak.py: 1,452 verdicts,
        1,451 holds). Written first, so the log reads verdict, hold, decision, in that order."""

        async def verdicts_then_hold() -> Approval:
            if self._audit is not None and len(request.decisions) > request.audited:
                await self._audit.write(request)
            return await hold()

        return shielded(verdicts_then_hold())

    def stop_waiting(self) -> None:
        """The gateway is shutting down: requests held for a human answer now (see `HoldDesk`)."""
        if self._desk is not None:
            self._desk.stop_waiting()

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.shutdown(wait=False, cancel_futures=True)
        if self._desk is not None:
            await self._desk.aclose()
        if self._audit is not None:
            await self._audit.aclose()


def _no_approvals(held: HeldCall) -> PolicyViolation:
    return PolicyViolation(
        held.rule,
        f"{held.message} (the call to '{held.call.name}' needs a human approval, and approvals are not enabled)",
        phase="tool_call",
    )
