"""Policy verdicts into the audit log, off the hot path.

Verdicts that stop or hold a request (deny, hold) go to the hash-chained audit log through the
audit trail's background queue (`AuditTrail.record_later`): the request never waits for the write,
a denial storm is written in batches (and bounded; repeats of one denial within the fold window are
counted into one entry: `gateway/audit/folding.py`), and a store outage loses audit entries (logged)
rather than failing requests. Redactions, clamps, loop notes, `log` and `allow` stay on the trace
only: an audit write per redacted request cost ~40% throughput.
"""

from __future__ import annotations

from typing import Any

from gateway.audit.trail import AuditTrail
from gateway.context import ApiRequest
from gateway.policies.engine import VERDICT
from gateway.store import StoreError

_AUDITED = frozenset({"deny", "hold"})


class VerdictAudit:
    def __init__(self, trail: AuditTrail) -> None:
        self._trail = trail

    def record(self, request: ApiRequest) -> None:
        """Queue the request's verdicts not audited yet (those that stop or hold it)."""
        for entry in self._new(request):
            self._trail.record_later(*entry, fold=entry[1] == "policy.deny")  # holds are each a reviewer's case

    async def write(self, request: ApiRequest) -> None:
        """Write them now, before the hold they lead to is stored: the log then reads in the order things
        happened (verdict, hold, decision) rather than with the verdict after the reviewer's decision.
        A store that cannot take them now gets them queued (and the hold then fails on its own terms)."""
        entries = self._new(request)
        for i, (actor, action, target, reason, details, at) in enumerate(entries):
            try:
                await self._trail.record(actor, action, target, reason, details, at=at)
            except StoreError:
                for entry in entries[i:]:
                    self._trail.record_later(*entry)
                return

    def _new(self, request: ApiRequest) -> list[tuple[str, str, str, str, dict[str, Any], float]]:
        actor = request.principal.name if request.principal else "anonymous"
        entries = []
        for decision in request.decisions[request.audited:]:
            entry = decision.attributes
            if decision.name == VERDICT and entry.get("action") in _AUDITED:
                entries.append((
                    actor, f"policy.{entry['action']}", str(entry["rule"]), str(entry.get("detail", "")),
                    {"phase": entry.get("phase"), "request_id": request.request_id,
                     "session_id": request.session_id or ""},
                    decision.at,
                ))
        request.audited = len(request.decisions)
        return entries

    async def aclose(self) -> None:
        await self._trail.drain()
