"""`Gateway`: where the gateway is and how to reach it; the factory for sessions."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Self

from opentelemetry import trace

from lockgate_sdk import tracing
from lockgate_sdk._api import AsyncApi, SyncApi, root_url
from lockgate_sdk.approvals import ApprovalPolicy
from lockgate_sdk.session import Session

DEFAULT_URL = "http://127.0.0.1:4000"


class Gateway:
    """`Gateway(base_url, api_key)`; both default to `LOCKGATE_BASE_URL` / `LOCKGATE_API_KEY`.

    `capture_content` puts tool arguments and results on spans (default: the standard
    `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`). `approvals` says how held responses
    are met (wait with backoff up to a deadline, or raise `ApprovalPending`).
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        agent_name: str = "agent",
        capture_content: bool | None = None,
        approvals: ApprovalPolicy | None = None,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self.root_url = root_url(base_url or os.environ.get("LOCKGATE_BASE_URL", DEFAULT_URL))
        self.openai_base_url = self.root_url + "/v1"
        self.api_key = api_key or os.environ.get("LOCKGATE_API_KEY", "")
        self.agent_name = agent_name
        self.capture_content = tracing.capture_content_from_env() if capture_content is None else capture_content
        self.approval_policy = approvals or ApprovalPolicy()
        self._tracer = tracing.get_tracer(tracer_provider)
        self._headers = {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self._sync_api: SyncApi | None = None

    @property
    def sync_api(self) -> SyncApi:
        if self._sync_api is None:
            self._sync_api = SyncApi(self.root_url, self._headers)
        return self._sync_api

    def new_async_api(self) -> AsyncApi:
        return AsyncApi(self.root_url, self._headers)

    def session(
        self,
        id: str | None = None,
        user: str | None = None,
        metadata: Mapping[str, str | int | float | bool] | None = None,
        *,
        agent_name: str | None = None,
        approvals: ApprovalPolicy | None = None,
    ) -> Session:
        """A session; the same `id` later (another process, after a restart) resumes its state."""
        return Session(
            self,
            id,
            user,
            metadata,
            agent_name or self.agent_name,
            approvals or self.approval_policy,
            self.capture_content,
            self._tracer,
        )

    def close(self) -> None:
        if self._sync_api is not None:
            self._sync_api.close()
            self._sync_api = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()

    def __repr__(self) -> str:  # never the key
        return f"Gateway({self.root_url!r})"
