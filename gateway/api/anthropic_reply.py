"""A chat answer turned back into Anthropic's Messages API: a `message` object, or its event stream.

The other half of `anthropic_request`: the pipeline answers in OpenAI's chat shape (from any upstream,
and from the gateway itself: a held call's "awaiting approval" reply, a denial's explanation), read
by `chat_answers`, and a client of `POST /v1/messages` gets Anthropic's. Text becomes a `text` block,
each tool call a `tool_use` block with its arguments parsed into `input`, the finish reason a
`stop_reason`, usage `input_tokens`/`output_tokens`.

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

from gateway.api.chat_answers import DONE, Chunk, StreamError, StreamItem, Tokens, read_completion, translated
from gateway.errors import anthropic_error_body, status_of
from gateway.providers.base import Summary

Body = dict[str, Any]

_STOP_REASONS = {
    "stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
    "content_filter": "refusal",
}


def message_body(completion: bytes, model: str) -> bytes:
    """Anthropic's `message` for an OpenAI chat completion's bytes."""
    answer = read_completion(completion)
    content: list[Body] = [{"type": "text", "text": answer.text}] if answer.text else []
    content += [
        {"type": "tool_use", "id": call.id, "name": call.name, "input": _tool_input(call.arguments)}
        for call in answer.calls
    ]
    return orjson.dumps({
        "id": _message_id(answer.id),
        "type": "message",
        "role": "assistant",
        "model": answer.model or model,
        "content": content,
        "stop_reason": _stop_reason(answer.finish),
        "stop_sequence": None,
        "usage": _usage(answer.tokens),
    })


def _message_id(completion_id: str) -> str:
    return "msg_" + (completion_id.removeprefix("chatcmpl-") or "lockgate")


def _stop_reason(finish: str | None) -> str | None:
    return None if finish is None else _STOP_REASONS.get(finish, "end_turn")


def _tool_input(arguments: str) -> Any:
    """A tool call's arguments as the object `input` must be. Arguments that are not a JSON object
    (a model's broken JSON) are kept whole under `arguments`, never dropped."""
    try:
        parsed = orjson.loads(arguments) if arguments else {}
    except orjson.JSONDecodeError:
        return {"arguments": arguments}
    return parsed if isinstance(parsed, dict) else {"arguments": parsed}


def _usage(tokens: Tokens) -> Body:
    usage: Body = {"input_tokens": tokens.input, "output_tokens": tokens.output}
    if tokens.cached:
        # Anthropic counts cache reads apart from `input_tokens`; OpenAI counts them inside.
        usage["cache_read_input_tokens"] = tokens.cached
        usage["input_tokens"] = max(tokens.input - tokens.cached, 0)
    return usage


def _event(name: str, data: Body) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


PING = _event("ping", {"type": "ping"})
# Most events of a stream are text deltas: written from a template, not a dict (a third of the
# translation's cost: bench/dialects.py).
_TEXT_DELTA = (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
               b'"delta":{"type":"text_delta","text":%b}}\n\n')


def message_events(chunks: AsyncIterator[bytes], model: str, summary: Summary | None) -> AsyncIterator[bytes]:
    """Anthropic's stream events for the pipeline's chat stream (its SSE byte blocks; `summary`: the
    serving provider's, see `chat_answers.translated`)."""
    return translated(chunks, _StreamTranslator(model).feed, PING, summary)


class _StreamTranslator:
    """The state of one translated stream: which block is open, and what the closing event reports."""

    def __init__(self, model: str) -> None:
        self._model = model
        self._started = False
        self._open: int | None = None  # the index of the block being written
        self._blocks = 0
        self._text_block: int | None = None
        self._tool_blocks: dict[int, int] = {}  # the chunk's tool call position -> its block's index
        self._stop_reason: str | None = None
        self._usage: Body = {"output_tokens": 0}
        self._ended = False

    def feed(self, item: StreamItem, out: list[bytes]) -> None:
        if self._ended:
            return
        if item is DONE:
            self._finish(out)
        elif isinstance(item, StreamError):
            status = status_of(item.code, item.type)
            out.append(b"event: error\ndata: " + anthropic_error_body(status, item.message) + b"\n\n")
            self._ended = True
        elif isinstance(item, Chunk):
            self._chunk(item, out)

    def _chunk(self, chunk: Chunk, out: list[bytes]) -> None:
        if not self._started:
            self._start(chunk.id, chunk.model, out)
        if chunk.text:
            if self._text_block is None or self._open != self._text_block:
                self._text_block = self._begin({"type": "text", "text": ""}, out)
            out.append(_TEXT_DELTA % (self._text_block, orjson.dumps(chunk.text)))
        for call in chunk.calls or ():
            index = self._tool_blocks.get(call.position)
            if index is None:
                index = self._tool_blocks[call.position] = self._begin(
                    {"type": "tool_use", "id": call.id or "", "name": call.name or "", "input": {}}, out
                )
            if call.arguments:
                out.append(_event("content_block_delta", {
                    "type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": call.arguments},
                }))
        if chunk.finish is not None:
            self._stop_reason = _stop_reason(chunk.finish)
        if chunk.tokens is not None:
            usage = _usage(chunk.tokens)
            self._usage = {"input_tokens": usage.pop("input_tokens"), **usage}

    def _start(self, completion_id: str, model: str | None, out: list[bytes]) -> None:
        self._started = True
        message: Body = {
            "id": _message_id(completion_id), "type": "message", "role": "assistant",
            "model": model or self._model, "content": [], "stop_reason": None,
            "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        out.append(_event("message_start", {"type": "message_start", "message": message}))

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
            self._start("", None, out)
        self._close(out)
        out.append(_event("message_delta", {
            "type": "message_delta", "delta": {"stop_reason": self._stop_reason or "end_turn", "stop_sequence": None},
            "usage": self._usage,
        }))
        out.append(_event("message_stop", {"type": "message_stop"}))
        self._ended = True
