"""A chat answer turned back into Anthropic's Messages API: a `message` object, or its event stream.

The other half of `anthropic_request`: the pipeline answers in OpenAI's chat shape (from any upstream,
and from the gateway itself: a held call's "awaiting approval" reply, a denial's explanation), and a
client of `POST /v1/messages` reads Anthropic's. Text becomes a `text` block, each tool call a
`tool_use` block with its arguments parsed into `input`, the finish reason a `stop_reason`, usage
`input_tokens`/`output_tokens`.

A stream is translated event by event as it is relayed: `message_start`, then per block
`content_block_start`, its deltas (`text_delta`, `input_json_delta`) and `content_block_stop`, then
`message_delta` (stop reason and usage) and `message_stop`. The gateway's SSE keep-alive comments
(a hold waiting for a reviewer) become Anthropic's `ping` events, and an error event after the first
byte becomes Anthropic's `error` event, which its SDK raises.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from gateway.errors import anthropic_error_body, status_of
from gateway.providers.sse import SSEDecoder

Body = dict[str, Any]

_STOP_REASONS = {
    "stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
    "content_filter": "refusal",
}


def message_body(completion: bytes, model: str) -> bytes:
    """Anthropic's `message` for an OpenAI chat completion's bytes."""
    parsed = orjson.loads(completion)  # the provider checked its shape; what is not as expected reads as absent
    choices = parsed.get("choices")
    choice = _dict(choices[0] if isinstance(choices, list) and choices else None)
    message = _dict(choice.get("message"))
    content: list[Body] = []
    text = message.get("content")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        call = _dict(call)
        function = _dict(call.get("function"))
        content.append({
            "type": "tool_use", "id": call.get("id") or "", "name": function.get("name") or "",
            "input": _tool_input(function.get("arguments")),
        })
    return orjson.dumps({
        "id": _message_id(parsed.get("id")),
        "type": "message",
        "role": "assistant",
        "model": parsed.get("model") or model,
        "content": content,
        "stop_reason": _stop_reason(choice.get("finish_reason")),
        "stop_sequence": None,
        "usage": _usage(parsed.get("usage")),
    })


def _dict(value: object) -> Body:
    return value if isinstance(value, dict) else {}


def _message_id(completion_id: object) -> str:
    if isinstance(completion_id, str) and completion_id:
        return "msg_" + completion_id.removeprefix("chatcmpl-")
    return "msg_lockgate"


def _stop_reason(finish: object) -> str | None:
    if finish is None:
        return None
    return _STOP_REASONS.get(finish, "end_turn") if isinstance(finish, str) else "end_turn"


def _tool_input(arguments: object) -> Any:
    """A tool call's arguments as the object `input` must be. Arguments that are not a JSON object
    (a model's broken JSON) are kept whole under `arguments`, never dropped."""
    if isinstance(arguments, str):
        try:
            parsed = orjson.loads(arguments) if arguments else {}
        except orjson.JSONDecodeError:
            return {"arguments": arguments}
        return parsed if isinstance(parsed, dict) else {"arguments": parsed}
    return arguments if isinstance(arguments, dict) else {}


def _usage(usage: object) -> Body:
    out: Body = {"input_tokens": 0, "output_tokens": 0}
    if not isinstance(usage, dict):
        return out
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if isinstance(prompt, int):
        out["input_tokens"] = prompt
    if isinstance(completion, int):
        out["output_tokens"] = completion
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    if isinstance(cached, int) and cached:
        # Anthropic counts cache reads apart from `input_tokens`; OpenAI counts them inside.
        out["cache_read_input_tokens"] = cached
        out["input_tokens"] = max(out["input_tokens"] - cached, 0)
    return out


def _event(name: str, data: Body) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


PING = _event("ping", {"type": "ping"})


async def message_events(chunks: AsyncIterator[bytes], model: str) -> AsyncIterator[bytes]:
    """Anthropic's stream events for the pipeline's chat stream (its SSE byte blocks)."""
    translator = _StreamTranslator(model)
    decoder = SSEDecoder()
    try:
        async for block in chunks:
            if block.startswith(b":"):
                yield PING  # a keep-alive comment while a hold waits: Anthropic's own keep-alive
                continue
            out: list[bytes] = []
            for payload in decoder.feed(block):
                translator.feed(payload, out)
            if out:
                yield b"".join(out)
    finally:
        # A client gone mid-stream closes this generator: the pipeline's own must close with it (its
        # `finally` releases the upstream and records the policies' verdicts).
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


class _StreamTranslator:
    """The state of one translated stream: which block is open, and what the closing event reports."""

    def __init__(self, model: str) -> None:
        self._model = model
        self._started = False
        self._open: int | None = None  # the index of the block being written
        self._blocks = 0
        self._text_block: int | None = None
        self._tool_blocks: dict[int, int] = {}  # the chunk's tool call index -> its block's index
        self._stop_reason: str | None = None
        self._usage: Body = {"output_tokens": 0}
        self.ended = False

    def feed(self, payload: bytes, out: list[bytes]) -> None:
        if self.ended:
            return
        if payload == b"[DONE]":
            self._finish(out)
            return
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return  # the gateway never relays one: its stream guard checks every chunk
        if not isinstance(chunk, dict):
            return
        error = chunk.get("error")
        if isinstance(error, dict):
            message = error.get("message")
            status = status_of(error.get("code"), error.get("type"))
            out.append(b"event: error\ndata: " + anthropic_error_body(status, str(message)) + b"\n\n")
            self.ended = True
            return
        if not self._started:
            self._start(chunk, out)
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                self._choice(choice, out)
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            counted = _usage(usage)
            self._usage = {"input_tokens": counted.pop("input_tokens"), **counted}

    def _start(self, chunk: Body, out: list[bytes]) -> None:
        self._started = True
        message: Body = {
            "id": _message_id(chunk.get("id")), "type": "message", "role": "assistant",
            "model": chunk.get("model") or self._model, "content": [], "stop_reason": None,
            "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        out.append(_event("message_start", {"type": "message_start", "message": message}))

    def _choice(self, choice: Body, out: list[bytes]) -> None:
        delta = choice.get("delta")
        if isinstance(delta, dict):
            text = delta.get("content")
            if isinstance(text, str) and text:
                if self._text_block is None or self._open != self._text_block:
                    self._text_block = self._begin({"type": "text", "text": ""}, out)
                out.append(_event("content_block_delta", {
                    "type": "content_block_delta", "index": self._text_block,
                    "delta": {"type": "text_delta", "text": text},
                }))
            for call in delta.get("tool_calls") or ():
                if isinstance(call, dict):
                    self._tool_call(call, out)
        finish = choice.get("finish_reason")
        if finish is not None:
            self._stop_reason = _stop_reason(finish)

    def _tool_call(self, call: Body, out: list[bytes]) -> None:
        position = call.get("index")
        position = position if isinstance(position, int) else 0
        function = _dict(call.get("function"))
        index = self._tool_blocks.get(position)
        if index is None:
            index = self._tool_blocks[position] = self._begin({
                "type": "tool_use", "id": call.get("id") or "", "name": function.get("name") or "", "input": {},
            }, out)
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            out.append(_event("content_block_delta", {
                "type": "content_block_delta", "index": index,
                "delta": {"type": "input_json_delta", "partial_json": arguments},
            }))

    def _begin(self, block: Body, out: list[bytes]) -> int:
        self._close(out)
        index = self._open = self._blocks
        self._blocks += 1
        out.append(_event("content_block_start", {"type": "content_block_start", "index": index,
                                                  "content_block": block}))
        return index

    def _close(self, out: list[bytes]) -> None:
        if self._open is not None:
            out.append(_event("content_block_stop", {"type": "content_block_stop", "index": self._open}))
            self._open = None

    def _finish(self, out: list[bytes]) -> None:
        if not self._started:
            self._start({}, out)
        self._close(out)
        out.append(_event("message_delta", {
            "type": "message_delta", "delta": {"stop_reason": self._stop_reason or "end_turn", "stop_sequence": None},
            "usage": self._usage,
        }))
        out.append(_event("message_stop", {"type": "message_stop"}))
        self.ended = True
