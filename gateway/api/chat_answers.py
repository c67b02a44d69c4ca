"""The pipeline's chat answers read into plain values, for the endpoints that answer in another API's shape.

`/v1/messages` (Anthropic) and `/v1/responses` (OpenAI Responses) run the chat pipeline and render its
answer their own way. Both need the same reading of it: a completion's text, tool calls, finish
reason and usage; a stream's chunks as deltas; the gateway's keep-alive comments and error events.
That reading is here, once; each endpoint's reply module only renders. Values the provider let
through in an odd shape (it checks what the gateway acts on) read as absent rather than failing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.providers.base import Summary, ToolCall
from gateway.providers.sse import SSEDecoder

Body = dict[str, Any]


def as_dict(value: object) -> Body:
    return value if isinstance(value, dict) else {}


@dataclass(slots=True)
class Tokens:
    """Usage as counted by the upstream (OpenAI's convention: cached tokens are inside `input`)."""

    input: int = 0
    output: int = 0
    cached: int = 0
    reasoning: int = 0

    @classmethod
    def of(cls, usage: object) -> Tokens:
        usage = as_dict(usage)
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        cached = as_dict(usage.get("prompt_tokens_details")).get("cached_tokens")
        reasoning = as_dict(usage.get("completion_tokens_details")).get("reasoning_tokens")
        return cls(*(v if isinstance(v, int) and not isinstance(v, bool) else 0
                     for v in (prompt, completion, cached, reasoning)))


@dataclass(slots=True)
class Completion:
    id: str
    created: int | None
    model: str | None
    text: str
    calls: list[ToolCall]
    finish: str | None
    tokens: Tokens


def read_completion(raw: bytes) -> Completion:
    """A chat completion's first choice (the other APIs have no `n`)."""
    parsed = as_dict(orjson.loads(raw))
    choices = parsed.get("choices")
    choice = as_dict(choices[0] if isinstance(choices, list) and choices else None)
    message = as_dict(choice.get("message"))
    text = message.get("content")
    calls = message.get("tool_calls")
    return Completion(
        id=_str(parsed.get("id")),
        created=parsed.get("created") if isinstance(parsed.get("created"), int) else None,
        model=_str(parsed.get("model")) or None,
        text=text if isinstance(text, str) else "",
        calls=[_call(as_dict(c)) for c in calls] if isinstance(calls, list) else [],
        finish=_str(choice.get("finish_reason")) or None,
        tokens=Tokens.of(parsed.get("usage")),
    )


def _call(call: Body) -> ToolCall:
    function = as_dict(call.get("function"))
    arguments = function.get("arguments")
    return ToolCall(_str(call.get("id")), _str(function.get("name")), arguments if isinstance(arguments, str) else "")


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


@dataclass(slots=True)
class CallDelta:
    position: int  # the call's index in the chunks (several calls stream side by side)
    id: str | None  # on the call's first delta
    name: str | None
    arguments: str


@dataclass(slots=True)
class Chunk:
    """One streamed chunk's first choice, read: what is new in it."""

    parsed: Body  # the whole chunk, for what is read once (its id and model, by the first)
    text: str = ""
    calls: list[CallDelta] | None = None
    finish: str | None = None
    tokens: Tokens | None = None

    @property
    def id(self) -> str:
        return _str(self.parsed.get("id"))

    @property
    def model(self) -> str | None:
        return _str(self.parsed.get("model")) or None


@dataclass(slots=True)
class StreamError:
    """An error event after the first byte (OpenAI's shape, as the pipeline writes it)."""

    message: str
    type: str | None
    code: str | None


DONE = object()  # the stream's `[DONE]`
StreamItem = Chunk | StreamError | object


def read_event(payload: bytes) -> StreamItem | None:
    """One SSE event's data: a chunk, an error, `DONE`, or None for anything else."""
    if payload == b"[DONE]":
        return DONE
    try:
        parsed = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None  # the gateway never relays one: its stream guard checks every chunk
    return read_chunk(parsed) if type(parsed) is dict else None


def read_chunk(parsed: Body) -> StreamItem:
    """A parsed chunk (or error event): what is new in it."""
    error = parsed.get("error")
    if isinstance(error, dict):
        code, kind = error.get("code"), error.get("type")
        return StreamError(str(error.get("message")), kind if isinstance(kind, str) else None,
                           code if isinstance(code, str) else None)
    chunk = Chunk(parsed)
    choices = parsed.get("choices")
    # Streams carry one choice: the first is read, others (a client's `n`) have no place in these APIs.
    choice = choices[0] if type(choices) is list and choices else None
    if type(choice) is dict and choice.get("index", 0) == 0:
        delta = choice.get("delta")
        if type(delta) is dict:
            text = delta.get("content")
            if type(text) is str:
                chunk.text = text
            calls = delta.get("tool_calls")
            if calls:
                chunk.calls = _call_deltas(calls)
        finish = choice.get("finish_reason")
        if finish is not None:
            chunk.finish = finish if type(finish) is str else None
    usage = parsed.get("usage")
    if type(usage) is dict:
        chunk.tokens = Tokens.of(usage)
    return chunk


def _call_deltas(calls: object) -> list[CallDelta]:
    found = []
    for call in calls if isinstance(calls, list) else ():
        call = as_dict(call)
        function = as_dict(call.get("function"))
        position, call_id, name = call.get("index"), call.get("id"), function.get("name")
        arguments = function.get("arguments")
        found.append(CallDelta(
            position if isinstance(position, int) else 0, call_id if isinstance(call_id, str) else None,
            name if isinstance(name, str) else None, arguments if isinstance(arguments, str) else "",
        ))
    return found


async def translated(
    chunks: AsyncIterator[bytes], feed: Callable[[StreamItem, list[bytes]], None], keep_alive: bytes,
    summary: Summary | None = None,
) -> AsyncIterator[bytes]:
    """The pipeline's stream rendered by `feed` (each read event to the bytes it writes to `out`);
    the gateway's keep-alive comments (a hold waiting for a reviewer) become `keep_alive`.

    `summary`: the serving provider's, whose `last_events` are the chunks it parsed from the block it
    relayed last (whole events). A block that arrives unchanged is not parsed a second time (a sixth
    of a stream's translation, bench/dialects.py); one that policies rewrote is.
    """
    decoder = SSEDecoder()
    try:
        async for block in chunks:
            if block.startswith(b":"):
                yield keep_alive
                continue
            out: list[bytes] = []
            if summary is not None and block is summary.last_block:
                for _, parsed in summary.last_events:
                    feed(read_chunk(parsed), out)
            else:
                for payload in decoder.feed(block):
                    item = read_event(payload)
                    if item is not None:
                        feed(item, out)
            if out:
                yield b"".join(out)
    finally:
        # A client gone mid-stream closes this generator: the pipeline's own must close with it (its
        # `finally` releases the upstream and records the policies' verdicts).
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
