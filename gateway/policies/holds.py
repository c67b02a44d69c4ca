"""Hold-for-approval as the requests see it: hold, wait, re-attach, deliver; and paused sessions.

- A held response is stored (`Approvals.create`) before anyone waits.
- Non-streaming clients wait within their read timeout (`x-stainless-read-timeout`, sent by the
  official SDKs) and the hold window; streaming clients get SSE keep-alive comments meanwhile.
- Past the window the client gets an ordinary completion saying the action awaits approval.
- Before the model is called, a request re-attaches to a hold made for the same request (a client
  retry, or a re-send after a gateway restart) or to its session's open hold, and receives the
  decision from it instead of a second model call.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from gateway.context import ApiRequest
from gateway.errors import ApprovalsUnavailable, PolicyViolation
from gateway.log_throttle import ThrottledWarning
from gateway.policies.approvals import Approval, Approvals
from gateway.policies.engine import HeldCall
from gateway.policies.loops import Loop
from gateway.policies.pauses import Pauses
from gateway.policies.replies import DONE, KEEP_ALIVE, as_chunks, completion
from gateway.policies.webhook import WebhookAnnouncer
from gateway.providers.base import ToolCall
from gateway.store import StoreError

log = logging.getLogger("lockgate.approvals")

# Seconds kept in hand under the client's read timeout, for the answer to travel.
_MARGIN = 1.0


def fingerprint(request: ApiRequest) -> str:
    principal = request.principal.name if request.principal else ""
    digest = hashlib.sha256(f"{principal}\n{request.model}\n".encode())
    digest.update(request.raw)
    return digest.hexdigest()


class HoldDesk:
    def __init__(self, approvals: Approvals, pauses: Pauses, webhooks: WebhookAnnouncer) -> None:
        self.approvals = approvals
        self.pauses = pauses
        self._webhooks = webhooks
        self._settings = approvals.settings
        self._warn_delivery = ThrottledWarning(log)

    def stop_waiting(self) -> None:
        """The gateway is shutting down (see `gateway/stop_signal.py`): held and paused requests stop
        waiting and answer now, as at the end of their window; a decision reaches the agent on its
        session's next request, through whichever gateway serves it."""
        self.approvals.stop_waiting()

    def window(self, request: ApiRequest) -> float:
        """How long this client can be kept waiting for a decision."""
        if self.approvals.stopping:
            return 0.0
        window = self._settings.hold_window
        if not request.stream:
            announced = request.headers.get("x-stainless-read-timeout")
            try:
                window = min(window, float(announced) - _MARGIN) if announced else window
            except ValueError:
                pass
        return max(0.0, window)

    # ------------------------------------------------------------------ before the model

    async def check_pause(self, request: ApiRequest) -> dict[str, Any] | None:
        """Refuse a stopped session/key; hold a paused one until resumed (or answer that it is paused)."""
        key = request.principal.name if request.principal else None
        state = await self.pauses.state_of(request.session_id, key)
        if state is None:
            return None
        loop = asyncio.get_running_loop()
        until = loop.time() + self.window(request)
        if state.state == "paused" and loop.time() < until:
            target = state.target
            request.decide("lockgate.pause.wait", target=target)
            waiting = self.pauses.waiting
            waiting[target] = waiting.get(target, 0) + 1
            try:
                # Polled, not pushed: a resume may come through another replica.
                while state is not None and state.state == "paused" and loop.time() < until:
                    await asyncio.sleep(min(0.25, max(0.0, until - loop.time())))
                    if self.approvals.stopping:
                        break
                    state = await self.pauses.state_of(request.session_id, key, fresh=True)
            finally:
                waiting[target] -= 1
                if not waiting[target]:
                    del waiting[target]
        if state is None:
            request.decide("lockgate.pause.released")
            return None
        why = f" ({state.reason})" if state.reason else ""
        request.decide("lockgate.pause", target=state.target, state=state.state, by=state.by)
        if state.state == "stopped":
            raise PolicyViolation("stopped", f"{state.target} was stopped by {state.by}{why}")
        return _text_completion(
            request,
            f"This {state.target.split(':')[0]} is paused by an operator{why}. The request was not sent to "
            "the model; send it again once it is resumed.",
        )

    async def reattach(self, request: ApiRequest) -> Approval | None:
        """A hold this request belongs to: made for the same request, or open on its session.

        The store is read only for a request or session the hold index lists (see `hold_index.py`).
        """
        index, approval = self.approvals.index, None
        await index.refresh()
        # The fingerprint hashes the whole body (~3 us for an agent's 5 KB): only when it can help.
        if index.lists_requests():
            digest = fingerprint(request)
            if index.lists_request(digest):
                approval = await self.approvals.for_request(digest)
        if approval is not None and approval.value.get("kind") == "loop":
            approval = None  # a loop hold is re-found by `loop_hold`, not answered from a response
        session_id = request.session_id
        if approval is None and session_id and index.lists_session(session_id):
            approval = await self.approvals.for_session(session_id)
        if approval is not None:
            request.decide("lockgate.approval.reattach", approval_id=approval.id, status=approval.status)
        return approval

    async def loop_hold(self, request: ApiRequest, loop: Loop) -> Approval:
        """The hold of a looping agent's request: the one this request re-attaches to, or a new one."""
        approval = await self.approvals.for_request(fingerprint(request))
        if approval is None or approval.value.get("kind") != "loop":
            approval = await self.approvals.create(
                fingerprint=fingerprint(request), session_id=request.session_id,
                key=request.principal.name if request.principal else "", model=request.model, deployment="",
                response=None, kind="loop",
                calls=[{"id": "loop", "name": loop.tools[0], "arguments": loop.arguments, "rule": "loops",
                        "message": f"the agent is looping: {loop.describe()}", "schema": None, "decision": None}],
            )
            request.decide("lockgate.approval.hold", approval_id=approval.id, tools=",".join(loop.tools))
            self._webhooks.announce(approval.public())
        return approval

    async def answer_loop(self, request: ApiRequest, loop: Loop, approval: Approval) -> dict[str, Any] | None:
        """Wait for the loop hold's decision within the client's window: None lets the request through
        to the model; an answer says it still awaits approval; a denial is refused."""
        if not approval.decided:
            approval = await self.approvals.wait(approval.id, self.window(request)) or approval
        if not approval.decided:
            self._awaiting(request, approval)
            return _text_completion(
                request,
                f"This agent is repeating itself ({loop.describe()}), so its next step is awaiting human "
                f"approval (approval id {approval.id}). Ask again later.",
            )
        decision = approval.calls[0]["decision"]
        request.decide("lockgate.approval.delivered", approval_id=approval.id, actions=decision["action"])
        if decision["action"] == "deny":
            who = "it expired unreviewed" if decision["by"] == "lockgate" else f"{decision['by']} stopped it"
            why = f" ({decision['reason']})" if decision.get("reason") and decision["by"] != "lockgate" else ""
            raise PolicyViolation("loops", f"the agent is looping: {loop.describe()}; {who}{why}")
        return None

    # ------------------------------------------------------------------ holding a response

    async def hold(
        self, request: ApiRequest, held: list[HeldCall], calls: list[ToolCall],
        response: dict[str, Any], deployment: str,
    ) -> Approval:
        """Store the held response durably, announce it; nobody has waited yet."""
        schemas = _tool_schemas(request.body)
        held_at = {h.index: h for h in held}
        entries = []
        for index, call in enumerate(calls):
            hold = held_at.get(index)
            entries.append({
                "id": call.id, "name": call.name, "arguments": call.arguments,
                "rule": hold.rule if hold else "", "message": hold.message if hold else "",
                "schema": schemas.get(call.name),
                # Calls no rule held go through with the others once those are decided.
                "decision": None if hold else {"action": "approve", "by": "policy", "reason": "", "at": 0},
            })
        try:
            approval = await self.approvals.create(
                fingerprint=fingerprint(request), session_id=request.session_id,
                key=request.principal.name if request.principal else "", model=request.model,
                deployment=deployment, response=response, calls=entries,
            )
        except StoreError as exc:
            # Not stored, not released: without a durable hold nobody could approve the call, and a
            # retry could not re-attach to it. The client is told to retry (the model is called again).
            names = ", ".join(f"'{h.call.name}'" for h in held)
            request.decide("lockgate.approval.unavailable", tools=",".join(h.call.name for h in held), error=str(exc))
            raise ApprovalsUnavailable(
                f"The call to {names} needs a human's approval, and the gateway cannot store the hold right now "
                "(its store is unreachable), so the call was not released. Retry shortly.",
                retry_after=2.0,
            ) from None
        request.decide("lockgate.approval.hold", approval_id=approval.id, tools=",".join(h.call.name for h in held))
        self._webhooks.announce(approval.public())
        return approval

    async def answer_json(self, request: ApiRequest, approval: Approval) -> dict[str, Any]:
        """Wait within the window; the decision, or word that it is awaited."""
        if not approval.decided:
            approval = await self.approvals.wait(approval.id, self.window(request)) or approval
        return await self._conclude(request, approval, text_sent=False)

    async def answer_stream(
        self, request: ApiRequest, approval: Approval, *, text_sent: bool
    ) -> AsyncIterator[bytes]:
        """Keep-alives while waiting, then the decision (or word that it is awaited) as chunks."""
        loop = asyncio.get_running_loop()
        until = loop.time() + self.window(request)
        if not text_sent:
            yield as_chunks(_placeholder(approval))[0]  # the role chunk: the client sees a live stream
        while not approval.decided and loop.time() < until and not self.approvals.stopping:
            step = min(self._settings.keep_alive, until - loop.time())
            approval = await self.approvals.wait(approval.id, step) or approval
            if not approval.decided and loop.time() < until and not self.approvals.stopping:
                yield KEEP_ALIVE
        body = await self._conclude(request, approval, text_sent=text_sent)
        for event in as_chunks(body, with_role=False):
            yield event

    async def _conclude(self, request: ApiRequest, approval: Approval, *, text_sent: bool) -> dict[str, Any]:
        if approval.decided:
            try:
                await self.approvals.delivered(approval)
            except StoreError as exc:  # the decision is here; at worst the session's next request gets it again
                self._warn_delivery("approval %s delivered, but not marked so in the store: %s", approval.id, exc)
            actions = ",".join(c["decision"]["action"] for c in approval.calls)
            request.decide("lockgate.approval.delivered", approval_id=approval.id, actions=actions)
        else:
            self._awaiting(request, approval)
        return completion(approval, decided=approval.decided, text_sent=text_sent)

    def _awaiting(self, request: ApiRequest, approval: Approval) -> None:
        """The client is told the hold still awaits a decision (and why, when it could have waited on)."""
        if self.approvals.stopping:
            request.decide("lockgate.approval.awaiting", approval_id=approval.id, cause="gateway shutting down")
        else:
            request.decide("lockgate.approval.awaiting", approval_id=approval.id)

    async def aclose(self) -> None:
        await self._webhooks.aclose()


def _tool_schemas(body: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for tool in body.get("tools") or ():
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            out[function["name"]] = function.get("parameters")
    return out


def _placeholder(approval: Approval) -> dict[str, Any]:
    return completion(approval, decided=False)


def _text_completion(request: ApiRequest, text: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{request.request_id}", "object": "chat.completion", "created": int(time.time()),
        "model": request.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}],
    }


__all__ = ["DONE", "HoldDesk", "fingerprint"]
