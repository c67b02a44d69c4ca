"""The request as the pipeline sees it: parsed once at the edge, then passed down explicitly."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.config.runtime import Principal

Operation = Literal["chat", "embeddings"]


@dataclass(slots=True)
class ApiRequest:
    request_id: str
    operation: Operation
    headers: Mapping[str, str]
    body: dict[str, Any]
    raw: bytes
    model: str
    stream: bool = False
    include_usage: bool = False
    principal: Principal | None = None
    session_id: str | None = None
    user: str | None = None
    # Loop time at which the request must be answered; set by the pipeline from the timeouts.
    deadline: float = 0.0
    annotations: dict[str, Any] = field(default_factory=dict)
