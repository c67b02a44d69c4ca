"""Response headers that tell an SDK a chat response was held for approval, and what became of it.

    x-lockgate-approval-id:      the approval's id
    x-lockgate-approval-status:  pending (the reply says the action awaits approval),
                                 approved | edited (the decided calls are in the reply),
                                 denied (every held call was denied; the reply explains it)

Read from the decisions the hold desk recorded on the request, so nothing is looked up twice. Only
JSON replies carry them: a stream's headers are gone before the hold is known.
"""

from __future__ import annotations

from gateway.context import ApiRequest

ID_HEADER = "x-lockgate-approval-id"
STATUS_HEADER = "x-lockgate-approval-status"


def hold_headers(request: ApiRequest) -> dict[str, str]:
    for decision in reversed(request.decisions):
        if decision.name == "lockgate.approval.awaiting":
            return {ID_HEADER: str(decision.attributes.get("approval_id", "")), STATUS_HEADER: "pending"}
        if decision.name == "lockgate.approval.delivered":
            actions = str(decision.attributes.get("actions", "")).split(",")
            status = "denied" if all(a == "deny" for a in actions) else "edited" if "edit" in actions else "approved"
            return {ID_HEADER: str(decision.attributes.get("approval_id", "")), STATUS_HEADER: status}
    return {}
