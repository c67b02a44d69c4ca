"""The seam between routing and the providers: what an upstream call takes and what it returns.

A provider turns an `UpstreamCall` into a `JsonReply` or a `StreamReply` and reports failures as
`UpstreamFailure`. Alongside the bytes for the client it fills a `Summary`: the little the gateway
parses out of a response (usage, finish reasons, tool calls, ids) for budgets, policies and traces.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.config.runtime import Deployment


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None

    @classmethod
    def from_openai(cls, usage: dict[str, Any]) -> Usage:
        prompt_details = usage.get("prompt_tokens_details") or {}
        completion_details = usage.get("completion_tokens_details") or {}
        return cls(
            input_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
            cached_tokens=prompt_details.get("cached_tokens"),
            reasoning_tokens=completion_details.get("reasoning_tokens"),
        )


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass(slots=True)
class Summary:
    """What the gateway read from a response; filled as a stream goes by."""

    response_id: str | None = None
    response_model: str | None = None
    finish_reasons: list[str] = field(default_factory=list)
    usage: Usage | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    # Seconds from sending the request to the first content chunk (streams only).
    time_to_first_chunk: float | None = None
    # Streams: the block of events relayed last, and its events with the chunks parsed from them
    # (the upstream's own bytes, and the object read from each). Policies inspect these instead of
    # parsing every chunk a second time; `last_block` lets them check it is the block in hand. Both are
    # cleared when the stream ends.
    last_block: bytes | None = None
    last_events: list[tuple[bytes, dict[str, Any]]] = field(default_factory=list)

    def read_completion(self, body: dict[str, Any]) -> None:
        """Fill from a whole chat.completion object."""
        self.response_id = body.get("id")
        self.response_model = body.get("model")
        for choice in body.get("choices") or ():
            if choice.get("finish_reason"):
                self.finish_reasons.append(choice["finish_reason"])
            for call in (choice.get("message") or {}).get("tool_calls") or ():
                function = call.get("function") or {}
                self.tool_calls.append(
                    ToolCall(call.get("id", ""), function.get("name", ""), function.get("arguments", ""))
                )
        if body.get("usage"):
            self.usage = Usage.from_openai(body["usage"])

    def read_chunk(self, chunk: dict[str, Any]) -> None:
        """Fill from one chat.completion.chunk, assembling tool calls from their deltas."""
        if self.response_id is None:
            self.response_id = chunk.get("id")
            self.response_model = chunk.get("model")
        for choice in chunk.get("choices") or ():
            if choice.get("finish_reason"):
                self.finish_reasons.append(choice["finish_reason"])
            for delta in (choice.get("delta") or {}).get("tool_calls") or ():
                index = delta.get("index", 0)
                while len(self.tool_calls) <= index:
                    self.tool_calls.append(ToolCall("", "", ""))
                call = self.tool_calls[index]
                function = delta.get("function") or {}
                call.id = delta.get("id") or call.id
                call.name += function.get("name") or ""
                call.arguments += function.get("arguments") or ""
        if chunk.get("usage"):
            self.usage = Usage.from_openai(chunk["usage"])


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    """One attempt's input: the client's request aimed at one deployment."""

    deployment: Deployment
    body: dict[str, Any]
    raw: bytes
    stream: bool
    # The client asked for the usage chunk (`stream_options.include_usage`).
    include_usage: bool
    # Seconds this attempt may take in all (the request's deadline caps the deployment's timeout).
    timeout: float
    # W3C `traceparent` naming this attempt's CLIENT span, when the request is traced.
    traceparent: str | None = None


@dataclass(slots=True)
class JsonReply:
    body: bytes
    summary: Summary
    # The body parsed, when the provider had to parse it anyway: policies read it instead of parsing
    # it again (and may rewrite it in place; `body` stays the upstream's bytes).
    parsed: dict[str, Any] | None = None


class StreamReply(Protocol):
    """An open upstream stream. Iterating yields SSE event bytes ready for the client."""

    summary: Summary

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class Provider(Protocol):
    async def chat(self, call: UpstreamCall) -> JsonReply: ...

    async def chat_stream(self, call: UpstreamCall) -> StreamReply: ...

    async def embeddings(self, call: UpstreamCall) -> JsonReply: ...

    async def aclose(self) -> None: ...


DONE_EVENT = b"data: [DONE]\n\n"


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait, from OpenAI's `retry-after-ms` or the standard `retry-after` (seconds only)."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    seconds = headers.get("retry-after")
    if seconds:
        try:
            return max(0.0, float(seconds))
        except ValueError:
            return None  # an HTTP date: rare from LLM providers; treat as unknown
    return None
