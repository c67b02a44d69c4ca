"""Held tool calls awaiting a human, kept durably in the shared `Store` (SQLite or Redis).

A hold is written *before* anyone waits: the whole response the model gave, the fingerprint of the
request that produced it, and one entry per tool call (calls no rule held are pre-approved). Three
documents index it:

- `approvals/<id>`: the approval itself (status, calls, decisions, the held response);
- `approval-requests/<fingerprint>`: the same request retried (or re-sent after a gateway restart)
  re-attaches to it instead of calling the model again;
- `approval-sessions/<session id>`: the session's next request receives the decision.

Decisions are compare-and-set writes, so two reviewers (or two replicas) cannot both win. Waiters
poll the store (decisions may come through another replica) and are woken at once by decisions
made in this process. An undecided hold expires to a denial when it is next read after
`expire_after`. Every hold and decision is appended to the audit log.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any

from gateway.config.policies import ApprovalsSection
from gateway.policies.hold_index import BY_REQUEST, BY_SESSION, HoldIndex
from gateway.shielded import shielded
from gateway.store import Doc, Store, StoreError, VersionConflict

APPROVALS = "approvals"
# How long a decided approval (and its indexes) is kept after it expired, for audits and retries.
_KEEP = 24 * 3600.0
# How often a waiter re-reads the store for decisions made by another replica.
_POLL = 0.25
# At most this many approvals are read to list some (a day of holds at ~7 a minute).
LIST_SCAN = 10_000


class ApprovalError(Exception):
    """A reviewer's request that cannot be applied (unknown id or call, already decided)."""


@dataclass(slots=True)
class Approval:
    id: str
    value: dict[str, Any]
    version: int

    @property
    def calls(self) -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = self.value["calls"]
        return calls

    @property
    def decided(self) -> bool:
        return all(c.get("decision") for c in self.calls)

    @property
    def status(self) -> str:
        return "decided" if self.decided else "pending"

    def public(self) -> dict[str, Any]:
        """What the admin API shows: everything except the raw held response."""
        out = {k: v for k, v in self.value.items() if k != "response"}
        out["status"] = self.status
        return out


class Approvals:
    def __init__(self, store: Store, settings: ApprovalsSection) -> None:
        self._store = store
        self.settings = settings
        # Waiters in this process, woken at once by decisions made in this process.
        self._wakers: dict[str, asyncio.Event] = {}
        self._waiters: dict[str, int] = {}  # how many wait on each waker: it goes with the last of them
        self.stopping = False  # the gateway is shutting down: every wait ends at once
        # Which requests and sessions may have a hold: re-attaching reads the store only for those.
        self.index = HoldIndex(store)

    # ------------------------------------------------------------------ holding

    async def create(
        self,
        *,
        fingerprint: str,
        session_id: str | None,
        key: str,
        model: str,
        deployment: str,
        response: dict[str, Any] | None,
        calls: list[dict[str, Any]],
        kind: str = "response",
    ) -> Approval:
        """`kind` "response": a model response held; "loop": a looping agent's next request held.

        The hold is written whole even if the request is cancelled meanwhile (its client hung up): a
        cancelled write left an approval without its request index (a retry called the model again)
        or without its audit entry (bench/soak.py: 8 of 1,038 holds decided had none).
        """
        return await shielded(self._create(
            fingerprint=fingerprint, session_id=session_id, key=key, model=model, deployment=deployment,
            response=response, calls=calls, kind=kind,
        ))

    async def _create(
        self, *, fingerprint: str, session_id: str | None, key: str, model: str, deployment: str,
        response: dict[str, Any] | None, calls: list[dict[str, Any]], kind: str,
    ) -> Approval:
        now = time.time()
        approval_id = "apr_" + os.urandom(9).hex()
        value = {
            "id": approval_id,
            "kind": kind,
            "created_at": now,
            "expires_at": now + self.settings.expire_after,
            "fingerprint": fingerprint,
            "session_id": session_id,
            "key": key,
            "model": model,
            "deployment": deployment,
            "calls": calls,
            "response": response,
        }
        keep = now + self.settings.expire_after + _KEEP
        self.index.add(fingerprint, session_id if kind == "response" else None)
        doc = await self._store.doc_put(APPROVALS, approval_id, value, now, expect_version=0, expires_at=keep)
        await self._store.doc_put(BY_REQUEST, fingerprint, {"id": approval_id}, now, expires_at=keep)
        if session_id and kind == "response":
            await self._store.doc_put(BY_SESSION, session_id, {"id": approval_id}, now, expires_at=keep)
        await self.index.changed()
        held = [c["name"] for c in calls if not c.get("decision")]
        await self._store.audit_append(
            "lockgate", "approval.hold", approval_id, "; ".join(c["message"] for c in calls if not c.get("decision")),
            {"tools": held, "key": key, "session_id": session_id or "", "model": model}, now,
        )
        return Approval(approval_id, doc.value, doc.version)

    async def get(self, approval_id: str) -> Approval | None:
        doc = await self._store.doc_get(APPROVALS, approval_id, time.time())
        if doc is None:
            return None
        return await self._expire_if_due(_approval(doc))

    async def for_request(self, fingerprint: str) -> Approval | None:
        return await self._indexed(BY_REQUEST, fingerprint)

    async def for_session(self, session_id: str) -> Approval | None:
        return await self._indexed(BY_SESSION, session_id)

    async def _indexed(self, namespace: str, key: str) -> Approval | None:
        index = await self._store.doc_get(namespace, key, time.time())
        return await self.get(index.value["id"]) if index is not None else None

    async def delivered(self, approval: Approval) -> None:
        """The decision reached the session: its next requests go to the model again."""
        session_id = approval.value.get("session_id")
        if session_id:
            index = await self._store.doc_get(BY_SESSION, session_id, time.time())
            if index is not None and index.value.get("id") == approval.id:
                if await self._store.doc_delete(BY_SESSION, session_id, expect_version=index.version):
                    self.index.delivered(session_id, approval.value["fingerprint"])
                    await self.index.changed()

    async def list(self, status: str | None = None, limit: int = 200, newest: bool = False) -> list[Approval]:
        """The oldest `limit` approvals with this status (any, when None); the newest, newest first, if asked.

        Every approval kept (decided ones for a day) is read and filtered before `limit` applies: the
        store lists them by id, which is random, so cutting first hid pending holds from reviewers
        once more than `limit` approvals were kept (bench/soak.py: 56 of 394 holds never listed). At
        most `LIST_SCAN` approvals are read; past that a listing can still miss some.
        """
        docs = await self._store.doc_list(APPROVALS, time.time(), limit=LIST_SCAN)
        out = []
        for doc in docs:
            approval = await self._expire_if_due(_approval(doc))
            if status is None or approval.status == status:
                out.append(approval)
        return sorted(out, key=lambda a: a.value["created_at"], reverse=newest)[:limit]

    # ------------------------------------------------------------------ waiting

    async def wait(self, approval_id: str, seconds: float) -> Approval | None:
        """The approval once decided, or as it stands after `seconds`."""
        loop = asyncio.get_running_loop()
        until = loop.time() + max(0.0, seconds)
        # One waker per approval, shared by its waiters (a request and its client's retry, say).
        waker = self._wakers.setdefault(approval_id, asyncio.Event())
        self._waiters[approval_id] = self._waiters.get(approval_id, 0) + 1
        approval: Approval | None = None
        try:
            while True:
                try:
                    approval, read = await self.get(approval_id), True
                except StoreError:  # the store is away: undecided as far as we know; keep waiting
                    read = False
                remaining = until - loop.time() if not self.stopping else 0.0
                if (read and (approval is None or approval.decided)) or remaining <= 0:
                    return approval
                try:
                    await asyncio.wait_for(waker.wait(), min(_POLL, remaining))
                except TimeoutError:
                    pass
                waker.clear()
        finally:
            left = self._waiters.pop(approval_id) - 1
            if left:
                self._waiters[approval_id] = left
            else:
                self._wakers.pop(approval_id, None)

    def stop_waiting(self) -> None:
        """The gateway is shutting down: every wait, now and later, ends with the approval as it stands."""
        self.stopping = True
        for waker in self._wakers.values():
            waker.set()

    # ------------------------------------------------------------------ deciding

    async def decide(
        self,
        approval_id: str,
        action: str,
        *,
        by: str,
        reason: str = "",
        call_id: str | None = None,
        arguments: str | None = None,
    ) -> Approval:
        """Approve, edit (with new `arguments`) or deny one call (`call_id`) or every undecided one.

        Like a hold, a decision is written whole (with its audit entries) even if the request making it
        is cancelled meanwhile: an expiry decided by a waiting stream whose client then hangs up.
        """
        return await shielded(self._decide(approval_id, action, by, reason, call_id, arguments))

    async def _decide(
        self, approval_id: str, action: str, by: str, reason: str, call_id: str | None, arguments: str | None
    ) -> Approval:
        for _ in range(5):
            # Read without the expiry check (expiry itself decides through here).
            current = await self._store.doc_get(APPROVALS, approval_id, time.time())
            if current is None:
                raise ApprovalError(f"There is no approval '{approval_id}'.")
            approval = _approval(current)
            targets = [c for c in approval.calls if not c.get("decision") and call_id in (None, c["id"])]
            if not targets:
                known = any(c["id"] == call_id for c in approval.calls) or call_id is None
                what = "already decided" if known else f"has no pending tool call '{call_id}'"
                raise ApprovalError(f"The approval '{approval_id}' {what}.")
            now = time.time()
            for call in targets:
                call["decision"] = {"action": action, "by": by, "reason": reason, "at": now}
                if action == "edit":
                    call["decision"]["arguments"] = arguments
            try:
                doc = await self._store.doc_put(
                    APPROVALS, approval_id, approval.value, now,
                    expect_version=approval.version, expires_at=now + _KEEP,
                )
            except VersionConflict:
                continue  # another reviewer or replica wrote first: re-read and re-check
            for call in targets:
                await self._store.audit_append(
                    by, f"approval.{action}", f"{approval_id}/{call['id']}", reason,
                    {"tool": call["name"], **({"arguments": arguments} if action == "edit" else {})}, now,
                )
            waker = self._wakers.get(approval_id)
            if waker is not None:
                waker.set()
            return Approval(approval_id, doc.value, doc.version)
        raise ApprovalError(f"The approval '{approval_id}' is being decided concurrently; try again.")

    async def _expire_if_due(self, approval: Approval) -> Approval:
        if approval.decided or time.time() < approval.value["expires_at"]:
            return approval
        reason = f"no decision within {self.settings.expire_after:g}s"
        try:
            return await self.decide(approval.id, "deny", by="lockgate", reason=f"expired: {reason}")
        except ApprovalError:
            fresh = await self._store.doc_get(APPROVALS, approval.id, time.time())
            return _approval(fresh) if fresh is not None else approval


def _approval(doc: Doc) -> Approval:
    return Approval(doc.key, doc.value, doc.version)
