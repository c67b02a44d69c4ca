"""The policy stage as the pipeline calls it: one call before routing, one after the response.

It ties the engine (verdicts), the response guard (JSON and streams) and, when configured, the
approvals (holds). Without approvals a `hold` verdict is refused like a `deny`, with a message
that says the action needs a human approval this gateway cannot collect.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from gateway.context import ApiRequest
from gateway.errors import PolicyViolation
from gateway.policies.engine import HeldCall, PolicyEngine
from gateway.policies.guard import ResponseGuard
from gateway.providers.base import JsonReply, Summary


class PolicyStage:
    def __init__(self, engine: PolicyEngine) -> None:
        self.engine = engine
        self._guard = ResponseGuard(engine)
        self._inspects = engine.inspects_responses or engine.inspects_tool_calls

    async def before_call(self, request: ApiRequest) -> None:
        """pre_call: may refuse (403) or rewrite the request, or hold a looping agent for a human."""
        loop = self.engine.before_call(request)
        if loop is not None:
            raise PolicyViolation(
                "loops",
                f"the agent is looping: {loop.describe()}; it needs a human to let it continue, "
                "and approvals are not enabled",
            )

    async def after_json(self, request: ApiRequest, reply: JsonReply) -> JsonReply:
        """post_call and tool_call on a whole completion."""
        if not self._inspects:
            return reply
        body, completion, held = self._guard.check_json(request, reply.body, reply.summary)
        if held:
            body = await self._hold_json(request, held, completion)
        if body is not reply.body:
            reply = JsonReply(body, reply.summary)
        return reply

    def filter_stream(self, request: ApiRequest, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """post_call and tool_call on a stream, as it passes."""
        if not self._inspects:
            return events
        return self._guard.filter_stream(request, events, self._hold_stream)

    async def _hold_json(self, request: ApiRequest, held: list[HeldCall], completion: dict[str, Any]) -> bytes:
        raise _no_approvals(held[0])

    async def _hold_stream(
        self, request: ApiRequest, held: list[HeldCall], calls: Summary, events: list[bytes]
    ) -> AsyncIterator[bytes]:
        raise _no_approvals(held[0])
        yield b""  # pragma: no cover  (makes this an async generator)


def _no_approvals(held: HeldCall) -> PolicyViolation:
    return PolicyViolation(
        held.rule,
        f"{held.message} (the call to '{held.call.name}' needs a human approval, and approvals are not enabled)",
        phase="tool_call",
    )
