"""The seam between routing and the providers: what an upstream call takes and what it returns.

A provider turns an `UpstreamCall` into a `JsonReply` or a `StreamReply` and reports failures as
`UpstreamFailure`. Alongside the bytes for the client it fills a `Summary`: the little the gateway
parses out of a response (usage, finish reasons, tool calls, ids) for budgets, policies and traces.

What the gateway acts on must have the shape OpenAI documents, or the response is refused as a bad
response (502, and another deployment tried while nothing has reached the client): an upstream that
answered 200 with a finish reason that was an object, a tool call that was a string or a choice
index that was a list made 500s, tracebacks and cut streams in the policies and the metrics
(found by an upstream sending randomly altered answers). Usage alone is taken leniently: token
counts that are not whole numbers make the usage unknown (the budget keeps its estimate), rather
than throw away an answer already paid for; and the response's id and model, which only label
traces and metrics, count as absent when they are not text.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.config.runtime import Deployment
from gateway.errors import UpstreamFailure

# Token counts past this are not counts (and no store column holds 10**30).
MAX_TOKENS = 2**53


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None

    @classmethod
    def from_openai(cls, usage: Any) -> Usage | None:
        """OpenAI's `usage` object; None when it is not one (unknown usage, not a failed answer)."""
        if not isinstance(usage, dict):
            return None
        prompt_details = usage.get("prompt_tokens_details") or {}
        completion_details = usage.get("completion_tokens_details") or {}
        prompt, completion = usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0
        cached = prompt_details.get("cached_tokens") if type(prompt_details) is dict else None
        reasoning = completion_details.get("reasoning_tokens") if type(completion_details) is dict else None
        if not (_count(prompt) and _count(completion) and (cached is None or _count(cached))
                and (reasoning is None or _count(reasoning))):
            return None
        return cls(prompt, completion, cached, reasoning)


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
        """Fill from a whole chat.completion object (a bad response if what it reads is misshapen)."""
        self.response_id = _label(body.get("id"))
        self.response_model = _label(body.get("model"))
        for choice in _objects(body.get("choices"), "choices"):
            finish = _text(choice.get("finish_reason"), "a finish_reason")
            if finish:
                self.finish_reasons.append(finish)
            message = choice.get("message")
            if message is None:
                continue
            if not isinstance(message, dict) or not isinstance(message.get("content"), (str, list, type(None))):
                raise _bad("a choice's message is misshapen")
            for call in _objects(message.get("tool_calls"), "tool_calls"):
                function = _object(call.get("function"), "a tool call's function")
                self.tool_calls.append(ToolCall(
                    _text(call.get("id"), "a tool call id") or "", _text(function.get("name"), "a tool name") or "",
                    _text(function.get("arguments"), "a tool call's arguments") or "",
                ))
        if body.get("usage"):
            self.usage = Usage.from_openai(body["usage"])

    def read_chunk(self, chunk: dict[str, Any]) -> None:
        """Fill from one chat.completion.chunk, assembling tool calls from their deltas (a bad response
        if what it reads is misshapen: the stream guard and the metrics read the same values)."""
        if self.response_id is None:
            self.response_id = _label(chunk.get("id"))
            self.response_model = _label(chunk.get("model"))
        choices = chunk.get("choices")
        if not choices:
            pass
        elif type(choices) is not list:  # the checks inline: this runs for every chunk of every stream
            raise _bad("'choices' is not a list of objects")
        else:
            for choice in choices:
                if type(choice) is not dict:
                    raise _bad("'choices' is not a list of objects")
                finish = choice.get("finish_reason")
                if finish:
                    if type(finish) is not str:
                        raise _bad("a finish_reason is not a string")
                    self.finish_reasons.append(finish)
                if type(choice.get("index", 0)) is not int:
                    raise _bad("a choice's index is not a number")
                delta = choice.get("delta")
                if delta:
                    if type(delta) is not dict:
                        raise _bad("a choice's delta is not an object")
                    if "tool_calls" in delta:
                        self._read_tool_deltas(delta["tool_calls"])
        if chunk.get("usage"):
            self.usage = Usage.from_openai(chunk["usage"])

    def _read_tool_deltas(self, parts: Any) -> None:
        for part in _objects(parts, "tool_calls"):
            index = part.get("index", 0)
            if type(index) is not int or not 0 <= index < 128:
                raise _bad("a tool call's index is not a small number")
            while len(self.tool_calls) <= index:
                self.tool_calls.append(ToolCall("", "", ""))
            call = self.tool_calls[index]
            function = _object(part.get("function"), "a tool call's function")
            call.id = _text(part.get("id"), "a tool call id") or call.id
            call.name += _text(function.get("name"), "a tool name") or ""
            call.arguments += _text(function.get("arguments"), "a tool call's arguments") or ""


def _count(value: Any) -> bool:
    return type(value) is int and 0 <= value < MAX_TOKENS


def _bad(what: str) -> UpstreamFailure:
    return UpstreamFailure("bad_response", what)


def _label(value: Any) -> str | None:
    """An id or model name, read for traces and metrics only: anything but text counts as absent."""
    return value if isinstance(value, str) else None


def _text(value: Any, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise _bad(f"{what} is not a string")


def _object(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    raise _bad(f"{what} is not an object")


def _objects(value: Any, what: str) -> list[dict[str, Any]]:
    if not value:
        return []
    if type(value) is list:
        for item in value:
            if type(item) is not dict:
                break
        else:
            return value
    raise _bad(f"'{what}' is not a list of objects")


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
