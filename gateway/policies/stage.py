"""The policy stage as the pipeline calls it: one call before routing, one after the response.

It ties the engine (verdicts), the response guard (JSON and streams) and the hold desk (approvals,
pauses). Without a hold desk a `hold` verdict is refused like a `deny`, with a message that says
the action needs a human approval this gateway cannot collect.

`before_call` may answer a request itself (an `Early` answer) instead of letting it reach the
model: a paused session, or a request that re-attaches to a held response.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
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
from gateway.policies.replies import as_chunks
from gateway.providers.base import JsonReply, Summary


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

    def attach(self, desk: HoldDesk, audit: VerdictAudit | None = None) -> None:
        """Enable holds, pauses and the audit trail (the store is built after the engine)."""
        self._desk = desk
        self._audit = audit

    async def before_call(self, request: ApiRequest) -> Early | None:
        """pre_call: may refuse (403), rewrite the request, or answer it without the model."""
        try:
            return await self._before_call(request)
        finally:
            if self._audit is not None and request.decisions:
                self._audit.record(request)

    async def _before_call(self, request: ApiRequest) -> Early | None:
        desk = self._desk
        if desk is not None:
            paused = await desk.check_pause(request)
            if paused is not None:
                return Early(desk, request, body=paused)
        loop = self.engine.before_call(request)
        if loop is not None and desk is not None:
            held = await desk.hold_loop(request, loop)
            if held is not None:
                return Early(desk, request, body=held)
        elif loop is not None:
            raise PolicyViolation(
                "loops",
                f"the agent is looping: {loop.describe()}; it needs a human to let it continue, "
                "and approvals are not enabled",
            )
        if desk is not None and (self.engine.may_hold or loop is not None):
            approval = await desk.reattach(request)
            if approval is not None:
                return Early(desk, request, approval=approval)
        return None

    async def after_json(self, request: ApiRequest, reply: JsonReply, deployment: str) -> JsonReply:
        """post_call and tool_call on a whole completion."""
        if not self._inspects:
            return reply
        seen = len(request.decisions)
        try:
            return await self._after_json(request, reply, deployment)
        finally:
            if self._audit is not None and len(request.decisions) > seen:
                self._audit.record_since(request, seen)

    async def _after_json(self, request: ApiRequest, reply: JsonReply, deployment: str) -> JsonReply:
        body, completion, held = self._guard.check_json(request, reply)
        if held:
            if self._desk is None:
                raise _no_approvals(held[0])
            message = (completion.get("choices") or [{}])[0].get("message") or {}
            response = {"id": completion.get("id"), "model": completion.get("model"),
                        "content": message.get("content"), "usage": completion.get("usage")}
            approval = await self._desk.hold(request, held, reply.summary.tool_calls, response, deployment)
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
            approval = await self._desk.hold(request, held, calls.tool_calls, response, deployment)
            async for event in self._desk.answer_stream(request, approval, text_sent=True):
                yield event

        return self._audited(request, self._guard.filter_stream(request, events, on_hold, summary))

    async def _audited(self, request: ApiRequest, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        seen = len(request.decisions)
        try:
            async for event in events:
                yield event
        finally:
            await events.aclose()  # type: ignore[attr-defined]
            if self._audit is not None and len(request.decisions) > seen:
                self._audit.record_since(request, seen)

    async def aclose(self) -> None:
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
