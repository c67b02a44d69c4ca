"""A session: one agent run (or a conversation resumed across runs), traced as an `invoke_agent` span.

Use it as a context manager, sync (`with gateway.session() as s:`) or async (`async with`). While
it is open its span is the current one, so tool spans and the gateway's LLM spans join its trace.
It hands out configured clients, the durable `state`, tool tracing and the approvals view.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Self, TypeVar, overload
from urllib.parse import quote

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from lockgate_sdk import clients
from lockgate_sdk import semconv as sc
from lockgate_sdk._api import AsyncApi, SyncApi
from lockgate_sdk.approvals import Approval, ApprovalPolicy, Approvals
from lockgate_sdk.errors import ApprovalDenied, ApprovalPending
from lockgate_sdk.state import SessionState
from lockgate_sdk.tools import ToolCall, tool_decorator

if TYPE_CHECKING:
    from lockgate_sdk.gateway import Gateway

log = logging.getLogger("lockgate_sdk")
F = TypeVar("F", bound=Callable[..., Any])


class Session:
    def __init__(
        self,
        gateway: Gateway,
        id: str | None,
        user: str | None,
        metadata: Mapping[str, str | int | float | bool] | None,
        agent_name: str,
        approvals: ApprovalPolicy,
        capture_content: bool,
        tracer: trace.Tracer,
    ) -> None:
        self.gateway = gateway
        self.id = id or f"ses_{uuid.uuid4().hex}"
        self.user = user
        self.metadata = dict(metadata or {})
        self.agent_name = agent_name
        self.capture_content = capture_content
        self.headers = {sc.SESSION_HEADER: self.id}
        if user:
            self.headers[sc.USER_HEADER] = user
        self._tracer = tracer
        self._async_api: AsyncApi | None = None
        self._reports: set[asyncio.Task[None]] = set()
        self._span: trace.Span | None = None
        self._token: object = None
        self.state = SessionState(self.id, self._sync, self._async)
        self.approvals = Approvals(self.id, approvals, self._sync, self._async)

    # ---- API clients ----

    def _sync(self) -> SyncApi:
        return self.gateway.sync_api

    def _async(self) -> AsyncApi:
        if self._async_api is None:
            self._async_api = self.gateway.new_async_api()
        return self._async_api

    # ---- the invoke_agent span ----

    @property
    def span(self) -> trace.Span | None:
        return self._span

    def _start(self) -> None:
        attributes: dict[str, str | int | float | bool] = {
            sc.OPERATION_NAME: sc.INVOKE_AGENT,
            sc.AGENT_NAME: self.agent_name,
            sc.CONVERSATION_ID: self.id,
            sc.SESSION_ID: self.id,
            sc.OPENINFERENCE_KIND: "AGENT",
        }
        if self.user:
            attributes[sc.USER_ID] = self.user
        for key, value in self.metadata.items():
            attributes[f"lockgate.session.metadata.{key}"] = value
        self._span = self._tracer.start_span(
            f"{sc.INVOKE_AGENT} {self.agent_name}", kind=SpanKind.INTERNAL, attributes=attributes
        )
        self._token = otel_context.attach(trace.set_span_in_context(self._span))

    def _finish(self, error: BaseException | None) -> None:
        span = self._span
        if span is None:
            return
        outcome = "ok"
        if isinstance(error, ApprovalPending):
            # Not a failure: the agent stops here and resumes once a human has decided.
            outcome = "approval_pending"
        elif error is not None:
            outcome = "approval_denied" if isinstance(error, ApprovalDenied) else "error"
            span.set_status(Status(StatusCode.ERROR, type(error).__qualname__))
            span.set_attribute(sc.ERROR_TYPE, type(error).__qualname__)
        span.set_attribute("lockgate.session.outcome", outcome)
        otel_context.detach(self._token)  # type: ignore[arg-type]
        span.end()
        self._span = None

    def __enter__(self) -> Self:
        self._start()
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self._finish(exc)

    async def __aenter__(self) -> Self:
        self._start()
        return self

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        try:
            if self._reports:
                await asyncio.gather(*self._reports, return_exceptions=True)
        finally:
            self._finish(exc)
            if self._async_api is not None:
                await self._async_api.aclose()
                self._async_api = None

    # ---- official clients ----

    def openai(self, **kwargs: Any) -> Any:
        """An `openai.OpenAI` for this session (kwargs go to its constructor)."""
        return clients.openai_client(self, **kwargs)

    def async_openai(self, **kwargs: Any) -> Any:
        return clients.openai_client(self, async_=True, **kwargs)

    def anthropic(self, **kwargs: Any) -> Any:
        return clients.anthropic_client(self, **kwargs)

    def async_anthropic(self, **kwargs: Any) -> Any:
        return clients.anthropic_client(self, async_=True, **kwargs)

    def http_client(self, *, async_: bool = False, library: str = "openai") -> Any:
        """Just the http client, for frameworks that build the `openai` client themselves
        (LangChain's `ChatOpenAI(http_client=..., http_async_client=...)`)."""
        return clients.http_client(self, library, async_=async_)

    # ---- tools ----

    def tool_call(
        self, name: str, call_id: str | None = None, arguments: Any = None, description: str | None = None
    ) -> ToolCall:
        """`with session.tool_call("search", call.id, args) as call: ...; call.set_result(r)`."""
        return ToolCall(self._tracer, self, self.capture_content, name, call_id, arguments, description)

    @overload
    def tool(self, fn: F) -> F: ...

    @overload
    def tool(self, *, name: str | None = None, description: str | None = None) -> Callable[[F], F]: ...

    def tool(
        self, fn: F | None = None, *, name: str | None = None, description: str | None = None
    ) -> F | Callable[[F], F]:
        """Decorate a sync or async tool function: each call is an `execute_tool` span."""

        def open_call(tool_name: str, arguments: Any, about: str | None) -> ToolCall:
            return self.tool_call(tool_name, None, arguments, about)

        def wrap(target: F) -> F:
            return tool_decorator(open_call, target, name, description)

        return wrap(fn) if fn is not None else wrap

    # EventSink: tool outcomes to the gateway. Reporting never fails the tool.

    @property
    def _events_path(self) -> str:
        return f"/v1/lockgate/sessions/{quote(self.id, safe='')}/events"

    def report(self, event: dict[str, Any]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            # A sync tool inside an async agent: do not block the loop; the session awaits it on exit.
            task = loop.create_task(self.areport(event))
            self._reports.add(task)
            task.add_done_callback(self._reports.discard)
            return
        try:
            self._sync().call("POST", self._events_path, json={"events": [event]})
        except Exception as exc:  # noqa: BLE001 - whatever broke, the tool's own outcome matters more
            log.warning("could not report tool %s to the gateway: %s", event.get("name"), exc)

    async def areport(self, event: dict[str, Any]) -> None:
        try:
            await self._async().call("POST", self._events_path, json={"events": [event]})
        except Exception as exc:  # noqa: BLE001 - as above
            log.warning("could not report tool %s to the gateway: %s", event.get("name"), exc)

    def events(self) -> list[dict[str, Any]]:
        """What the gateway recorded for this session (tool outcomes), oldest first."""
        body = self._sync().call("GET", self._events_path)
        return list(body.get("data", []))

    async def aevents(self) -> list[dict[str, Any]]:
        body = await self._async().call("GET", self._events_path)
        return list(body.get("data", []))

    # ---- approvals ----

    def pending_approvals(self) -> list[Approval]:
        return self.approvals.pending()

    async def apending_approvals(self) -> list[Approval]:
        return await self.approvals.apending()

    def wait_for_approval(self, approval_id: str, timeout: float | None = None) -> Approval:
        return self.approvals.wait(approval_id, timeout)

    async def await_approval(self, approval_id: str, timeout: float | None = None) -> Approval:
        return await self.approvals.await_decision(approval_id, timeout)
