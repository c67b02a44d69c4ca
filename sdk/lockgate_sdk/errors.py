"""The SDK's typed errors: what an agent can catch, each carrying what it needs to act on it."""

from __future__ import annotations

from typing import Any


class LockgateError(Exception):
    """Base of every error the SDK raises itself."""


class GatewayApiError(LockgateError):
    """The gateway refused a session API call; `status`, `code` and `message` come from its error body."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(f"{message} (HTTP {status}{', ' + code if code else ''})")
        self.status = status
        self.code = code
        self.message = message


class StateConflict(GatewayApiError):
    """Another writer changed `key` since this session last read it: nothing was overwritten.

    `expected_version` is what this writer based its change on, `current_version` what the gateway
    holds now. Re-read (`state.refresh()`), merge, and write again, or use `state.update(key, fn)`.
    """

    def __init__(self, key: str, expected_version: int, current_version: int | None, message: str) -> None:
        super().__init__(409, message, "state_conflict")
        self.key = key
        self.expected_version = expected_version
        self.current_version = current_version


class ApprovalError(LockgateError):
    """Base of the approval outcomes an agent may want to handle."""

    def __init__(self, message: str, approval_id: str, session_id: str | None) -> None:
        super().__init__(message)
        self.approval_id = approval_id
        self.session_id = session_id


class ApprovalPending(ApprovalError):
    """A response is held for a human (opt-in mode). Persist `approval_id`, resume later with
    `session.wait_for_approval(approval_id)` or by repeating the same request in the same session."""

    def __init__(self, approval_id: str, session_id: str | None, detail: dict[str, Any] | None = None) -> None:
        super().__init__(f"The response is held for approval {approval_id}.", approval_id, session_id)
        self.detail = detail or {}


class ApprovalDenied(ApprovalError):
    """A reviewer denied the held action; `reason` is what they wrote, `reviewer` who they are."""

    def __init__(self, approval_id: str, session_id: str | None, reason: str | None, reviewer: str | None) -> None:
        text = f"Approval {approval_id} was denied"
        text += f" by {reviewer}" if reviewer else ""
        text += f": {reason}" if reason else "."
        super().__init__(text, approval_id, session_id)
        self.reason = reason
        self.reviewer = reviewer


class ApprovalTimeout(ApprovalError):
    """No decision arrived before the SDK's deadline; the approval is still pending on the gateway."""

    def __init__(self, approval_id: str, session_id: str | None, waited: float) -> None:
        super().__init__(
            f"No decision on approval {approval_id} after {waited:.1f}s; it is still pending.", approval_id, session_id
        )
        self.waited = waited
