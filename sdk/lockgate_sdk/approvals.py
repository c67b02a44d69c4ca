"""Held responses: wait for the reviewer's decision with backoff and a deadline, or raise at once.

The gateway marks a held chat response with `x-lockgate-approval-id` and
`x-lockgate-approval-status: pending`. In "wait" mode the SDK then polls the session's approval
(`GET /v1/lockgate/sessions/{id}/approvals/{approval_id}`, with the agent's own key) with
exponential backoff until every held call is decided or the deadline passes (`ApprovalTimeout`),
and sends the same request again: the gateway re-attaches it to the stored response and delivers
the decision (approved or edited tool calls) without calling the model twice. When every held call
was denied (or the hold expired) the SDK raises `ApprovalDenied` with the reviewers' reasons. In
"raise" mode it raises `ApprovalPending` at once, for agents that persist and resume.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

from lockgate_sdk._api import AsyncApi, SyncApi
from lockgate_sdk.errors import ApprovalDenied, ApprovalPending, ApprovalTimeout

ApprovalMode = Literal["wait", "raise"]
PENDING = "pending"
# The gateway's own name as the decider of an expired hold.
EXPIRY = "lockgate"


@dataclass(frozen=True, slots=True)
class ApprovalPolicy:
    """How the SDK meets a held response. `mode="raise"` opts into `ApprovalPending`;
    `on_denial="reply"` hands the gateway's explanatory reply to the agent instead of raising
    `ApprovalDenied`."""

    mode: ApprovalMode = "wait"
    on_denial: Literal["raise", "reply"] = "raise"
    timeout: float = 600.0
    initial_delay: float = 0.2
    max_delay: float = 5.0
    multiplier: float = 2.0

    def delays(self) -> Any:
        delay = self.initial_delay
        while True:
            yield delay
            delay = min(self.max_delay, delay * self.multiplier)


@dataclass(frozen=True, slots=True)
class Approval:
    """One hold as the agent sees it. `status`: pending, approved, edited or denied."""

    id: str
    status: str
    session_id: str | None = None
    reason: str | None = None
    reviewer: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Approval:
        calls = [c for c in body.get("calls", []) if isinstance(c, dict)]
        decisions = [c.get("decision") for c in calls]
        status = str(body.get("status", PENDING)).lower()
        reason = reviewer = None
        if status != PENDING:
            made = [d for d in decisions if isinstance(d, dict)]
            actions = [d.get("action") for d in made]
            status = "denied" if made and all(a == "deny" for a in actions) else "edited" if "edit" in actions else "approved"
            denials = [d for d in made if d.get("action") == "deny"]
            reasons = [
                "it expired before anyone decided" if d.get("by") == EXPIRY else str(d.get("reason") or "")
                for d in denials
            ]
            reason = "; ".join(r for r in reasons if r) or None
            reviewer = ", ".join(sorted({str(d.get("by")) for d in denials if d.get("by")})) or None
        return cls(str(body.get("id")), status, body.get("session_id") or None, reason, reviewer, body)

    @property
    def decided(self) -> bool:
        return self.status != PENDING

    @property
    def denied(self) -> bool:
        return self.status == "denied"

    def denial(self) -> ApprovalDenied:
        return ApprovalDenied(self.id, self.session_id, self.reason, self.reviewer)


def _items(body: Any) -> list[dict[str, Any]]:
    if isinstance(body, dict):
        body = body.get("data", body.get("approvals", []))
    return [item for item in body if isinstance(item, dict)] if isinstance(body, list) else []


class Approvals:
    """A session's view of the approvals API. The API clients are passed as getters: they are
    created lazily by the session (the async one inside the session's event loop)."""

    def __init__(
        self,
        session_id: str,
        policy: ApprovalPolicy,
        sync_api: Callable[[], SyncApi],
        async_api: Callable[[], AsyncApi],
    ) -> None:
        self.session_id = session_id
        self.policy = policy
        self._path = f"/v1/lockgate/sessions/{quote(session_id, safe='')}/approvals"
        self._sync = sync_api
        self._async = async_api

    # ---- sync ----

    def get(self, approval_id: str) -> Approval:
        return Approval.from_json(self._sync().call("GET", f"{self._path}/{quote(approval_id, safe='')}"))

    def pending(self) -> list[Approval]:
        body = self._sync().call("GET", self._path, params={"status": PENDING})
        return [Approval.from_json(item) for item in _items(body)]

    def wait(self, approval_id: str, timeout: float | None = None) -> Approval:
        """Block until every held call is decided (`ApprovalTimeout` past the deadline)."""
        deadline = time.monotonic() + (self.policy.timeout if timeout is None else timeout)
        started = time.monotonic()
        for delay in self.policy.delays():
            approval = self.get(approval_id)
            if approval.decided:
                return approval
            left = deadline - time.monotonic()
            if left <= 0:
                raise ApprovalTimeout(approval_id, self.session_id, time.monotonic() - started)
            time.sleep(min(delay, left))
        raise AssertionError("unreachable")

    def resolve(self, approval_id: str) -> Approval:
        if self.policy.mode == "raise":
            raise ApprovalPending(approval_id, self.session_id)
        return self.wait(approval_id)

    # ---- async ----

    async def aget(self, approval_id: str) -> Approval:
        return Approval.from_json(await self._async().call("GET", f"{self._path}/{quote(approval_id, safe='')}"))

    async def apending(self) -> list[Approval]:
        body = await self._async().call("GET", self._path, params={"status": PENDING})
        return [Approval.from_json(item) for item in _items(body)]

    async def await_decision(self, approval_id: str, timeout: float | None = None) -> Approval:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + (self.policy.timeout if timeout is None else timeout)
        for delay in self.policy.delays():
            approval = await self.aget(approval_id)
            if approval.decided:
                return approval
            left = deadline - loop.time()
            if left <= 0:
                raise ApprovalTimeout(approval_id, self.session_id, loop.time() - started)
            await asyncio.sleep(min(delay, left))
        raise AssertionError("unreachable")

    async def aresolve(self, approval_id: str) -> Approval:
        if self.policy.mode == "raise":
            raise ApprovalPending(approval_id, self.session_id)
        return await self.await_decision(approval_id)
