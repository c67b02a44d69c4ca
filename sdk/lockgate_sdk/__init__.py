"""The thin Lockgate SDK: sessions with durable state, tool tracing and approvals.

    from lockgate_sdk import Gateway

    gateway = Gateway("http://127.0.0.1:4000", api_key="...")
    with gateway.session(user="ada") as session:
        client = session.openai()          # official client, traced, session-aware

        @session.tool
        def search(query: str) -> str: ...

        session.state["step"] = 2          # durable, versioned
"""

from lockgate_sdk.approvals import Approval, ApprovalPolicy
from lockgate_sdk.errors import (
    ApprovalDenied,
    ApprovalError,
    ApprovalPending,
    ApprovalTimeout,
    GatewayApiError,
    LockgateError,
    StateConflict,
)
from lockgate_sdk.gateway import Gateway
from lockgate_sdk.session import Session
from lockgate_sdk.state import SessionState
from lockgate_sdk.tools import ToolCall

__all__ = [
    "Approval",
    "ApprovalDenied",
    "ApprovalError",
    "ApprovalPending",
    "ApprovalPolicy",
    "ApprovalTimeout",
    "Gateway",
    "GatewayApiError",
    "LockgateError",
    "Session",
    "SessionState",
    "StateConflict",
    "ToolCall",
]
