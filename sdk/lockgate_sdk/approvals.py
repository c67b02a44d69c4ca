"""Held responses: wait for the reviewer's decision with backoff and a deadline, or raise at once.

Speaks the gateway's approvals API (`GET /admin/approvals?session_id=&status=pending`,
`GET /admin/approvals/{id}`). An approval is decided when its status leaves `pending`: `approved`
or `edited` let the agent go on (the same request, sent again, gets the decided response), `denied`
or `expired` raise `ApprovalDenied` with the reviewer's reason.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from lockgate_sdk._api import AsyncApi, SyncApi
from lockgate_sdk.errors import ApprovalDenied, ApprovalPending, ApprovalTimeout

ApprovalMode = Literal["wait", "raise"]
PENDING = "pending"
GO_ON = frozenset({"approved", "edited"})


@dataclass(frozen=True, slots=True)
class ApprovalPolicy:
    """How the SDK meets a held response. `mode="raise"` opts into `ApprovalPending`."""

    mode: ApprovalMode = "wait"
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
    id: str
    status: str
    session_id: str | None = None
    reason: str | None = None
    reviewer: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Approval:
        found = body.get("decision")
        decision: dict[str, Any] = found if isinstance(found, dict) else {}
        return cls(
            id=str(body.get("id") or body.get("approval_id")),
            status=str(body.get("status", PENDING)).lower(),
            session_id=body.get("session_id"),
            reason=body.get("reason") or decision.get("reason"),
            reviewer=body.get("reviewer") or body.get("decided_by") or decision.get("reviewer"),
            raw=body,
        )

    @property
    def decided(self) -> bool:
        return self.status != PENDING


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
        self._sync = sync_api
        self._async = async_api

    def _check(self, approval: Approval) -> Approval:
        if approval.status in GO_ON or approval.status == PENDING:
            return approval
        reason = approval.reason or ("the approval expired before anyone decided" if approval.status == "expired" else None)
        raise ApprovalDenied(approval.id, self.session_id, reason, approval.reviewer)

    # ---- sync ----

    def get(self, approval_id: str) -> Approval:
        return Approval.from_json(self._sync().call("GET", f"/admin/approvals/{approval_id}"))

    def pending(self) -> list[Approval]:
        body = self._sync().call("GET", "/admin/approvals", params={"session_id": self.session_id, "status": PENDING})
        return [Approval.from_json(item) for item in _items(body)]

    def wait(self, approval_id: str, timeout: float | None = None) -> Approval:
        """Block until the approval is decided; raise `ApprovalDenied` or `ApprovalTimeout`."""
        deadline = time.monotonic() + (self.policy.timeout if timeout is None else timeout)
        started = time.monotonic()
        for delay in self.policy.delays():
            approval = self._check(self.get(approval_id))
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
        return Approval.from_json(await self._async().call("GET", f"/admin/approvals/{approval_id}"))

    async def apending(self) -> list[Approval]:
        body = await self._async().call(
            "GET", "/admin/approvals", params={"session_id": self.session_id, "status": PENDING}
        )
        return [Approval.from_json(item) for item in _items(body)]

    async def await_decision(self, approval_id: str, timeout: float | None = None) -> Approval:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + (self.policy.timeout if timeout is None else timeout)
        for delay in self.policy.delays():
            approval = self._check(await self.aget(approval_id))
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
