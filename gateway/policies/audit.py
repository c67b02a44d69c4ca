"""Policy verdicts into the audit log, off the hot path.

Verdicts that stop or hold a request (deny, hold) go to the hash-chained audit log through the
audit trail's background queue (`AuditTrail.record_later`): the request never waits for the write,
a denial storm is written in batches (and bounded; repeats of one denial within the fold window are
counted into one entry: `gateway/audit/folding.py`), and a store outage loses audit entries (logged)
rather than failing requests. Redactions, clamps, loop notes, `log` and `allow` stay on the trace
only: an audit write per redacted request cost ~40% throughput.
"""

from __future__ import annotations

from gateway.audit.trail import AuditTrail
from gateway.context import ApiRequest
from gateway.policies.engine import VERDICT

_AUDITED = frozenset({"deny", "hold"})


class VerdictAudit:
    def __init__(self, trail: AuditTrail) -> None:
        self._trail = trail

    def record(self, request: ApiRequest) -> None:
        self.record_since(request, 0)

    def record_since(self, request: ApiRequest, first: int) -> None:
        """Audit the request's verdicts from decision number `first` on."""
        actor = request.principal.name if request.principal else "anonymous"
        for decision in request.decisions[first:]:
            entry = decision.attributes
            if decision.name == VERDICT and entry.get("action") in _AUDITED:
                self._trail.record_later(
                    actor, f"policy.{entry['action']}", str(entry["rule"]), str(entry.get("detail", "")),
                    {"phase": entry.get("phase"), "request_id": request.request_id,
                     "session_id": request.session_id or ""},
                    at=decision.at, fold=entry["action"] == "deny",  # holds are each a reviewer's case
                )

    async def aclose(self) -> None:
        await self._trail.drain()
