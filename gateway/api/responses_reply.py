"""A chat answer turned back into OpenAI's Responses API: a `response` object, or its event stream.

The other half of `responses_request`. Text becomes a `message` output item with one `output_text`
part, each tool call a `function_call` item; a cut by `max_output_tokens` (or a content filter) is an
`incomplete` response, as OpenAI reports it. The response echoes the request's settings (`tools`,
`tool_choice`, `instructions`...), as OpenAI's does: clients read them back.

A stream is translated as it is relayed: `response.created` and `response.in_progress`, then per item
`response.output_item.added`, its deltas (`response.output_text.delta`,
`response.function_call_arguments.delta`) and its `...done` events, then `response.completed` (or
`response.incomplete`) with the whole response and its usage. Every event has its `sequence_number`.
The gateway's keep-alive comments stay comments (the `openai` SDK skips them); an error after the
first byte is an `error` event followed by `response.failed`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from gateway.api.chat_answers import (
    DONE,
    Chunk,
    Completion,
    StreamError,
    StreamItem,
    Tokens,
    as_dict,
    read_completion,
    translated,
)
from gateway.providers.base import Summary

Body = dict[str, Any]

KEEP_ALIVE = b": keep-alive\n\n"
# Most events of a stream are text deltas: written from a template, not a dict (bench/dialects.py).
_TEXT_DELTA_HEAD = (b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","item_id":%b,'
                    b'"output_index":%d,"content_index":0,"delta":')
_TEXT_DELTA_TAIL = b',"logprobs":[],"sequence_number":%d}\n\n'
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


class ResponseShape:
    """What a response says besides its output: its id and the request's settings, echoed."""

    def __init__(self, request: Body, model: str) -> None:
        tools = request.get("tools")
        self.settings: Body = {
            "instructions": request.get("instructions") if isinstance(request.get("instructions"), str) else None,
            "max_output_tokens": request.get("max_output_tokens"),
            "metadata": request.get("metadata") if isinstance(request.get("metadata"), dict) else {},
            "parallel_tool_calls": request.get("parallel_tool_calls", True),
            "previous_response_id": None,
            "temperature": request.get("temperature", 1.0),
            "text": request.get("text") if isinstance(request.get("text"), dict) else {"format": {"type": "text"}},
            "tool_choice": request.get("tool_choice", "auto"),
            "tools": [_function_tool(as_dict(t)) for t in tools] if isinstance(tools, list) else [],
            "top_p": request.get("top_p", 1.0),
            "truncation": "disabled",
            "store": False,  # nothing is kept: a `previous_response_id` naming this one would be refused
        }
        if isinstance(request.get("user"), str):
            self.settings["user"] = request["user"]
        self.model = model
        self.id = ""
        self.created = int(time.time())
        self.identify("")  # until the answer's own id is known

    def identify(self, completion_id: str) -> None:
        """Ids from the completion's: the same answer (a retry re-attached to a hold) keeps its ids."""
        suffix = completion_id.removeprefix("chatcmpl-") or f"{time.time_ns():x}"
        self.id = "resp_" + suffix

    def item_id(self, prefix: str, index: int) -> str:
        return f"{prefix}_{self.id.removeprefix('resp_')}_{index}"

    def response(self, status: str, output: list[Body], tokens: Tokens | None, *, reason: str | None = None,
                 error: Body | None = None) -> Body:
        response: Body = {
            "id": self.id, "object": "response", "created_at": self.created, "status": status,
            "model": self.model, "output": output, "error": error,
            "incomplete_details": {"reason": reason} if reason else None,
            **self.settings,
        }
        if tokens is not None:  # not known yet: absent, as OpenAI's in-progress responses leave it
            response["usage"] = _usage(tokens)
        return response


def _function_tool(tool: Body) -> Body:
    echoed: Body = {"type": "function", "name": tool.get("name"), "parameters": tool.get("parameters"),
                    "strict": tool.get("strict")}
    if tool.get("description") is not None:
        echoed["description"] = tool["description"]
    return echoed


def _usage(tokens: Tokens) -> Body:
    return {
        "input_tokens": tokens.input, "input_tokens_details": {"cached_tokens": tokens.cached, "cache_write_tokens": 0},
        "output_tokens": tokens.output, "output_tokens_details": {"reasoning_tokens": tokens.reasoning},
        "total_tokens": tokens.input + tokens.output,
    }


def _status(finish: str | None) -> tuple[str, str | None]:
    reason = _INCOMPLETE.get(finish or "")
    return ("incomplete", reason) if reason else ("completed", None)


def _message_item(item_id: str, text: str, status: str) -> Body:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {"type": "message", "id": item_id, "status": status, "role": "assistant",
            "content": [part] if status == "completed" or text else []}


def _call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> Body:
    return {"type": "function_call", "id": item_id, "call_id": call_id, "name": name, "arguments": arguments,
            "status": status}


def response_body(completion: bytes, shape: ResponseShape) -> bytes:
    """OpenAI's `response` for a chat completion's bytes."""
    answer: Completion = read_completion(completion)
    shape.identify(answer.id)
    if answer.created:
        shape.created = answer.created
    output: list[Body] = []
    if answer.text:
        output.append(_message_item(shape.item_id("msg", 0), answer.text, "completed"))
    for call in answer.calls:
        output.append(_call_item(shape.item_id("fc", len(output)), call.id, call.name, call.arguments, "completed"))
    status, reason = _status(answer.finish)
    if answer.model:
        shape.model = answer.model
    return orjson.dumps(shape.response(status, output, answer.tokens, reason=reason))


def response_events(
    chunks: AsyncIterator[bytes], shape: ResponseShape, summary: Summary | None
) -> AsyncIterator[bytes]:
    """The Responses API's stream events for the pipeline's chat stream (its SSE byte blocks; `summary`:
    the serving provider's, see `chat_answers.translated`)."""
    return translated(chunks, _StreamTranslator(shape).feed, KEEP_ALIVE, summary)


class _StreamTranslator:
    """The state of one translated stream: the output items so far and which one is being written."""

    def __init__(self, shape: ResponseShape) -> None:
        self._shape = shape
        self._sequence = 0
        self._started = False
        self._output: list[Body] = []
        self._open: int | None = None  # the output index of the item being written
        self._text_item: int | None = None
        self._texts: dict[int, list[str]] = {}  # a message item's text so far, by output index
        self._delta_head = b""  # the text deltas' bytes before the text, for the message item being written
        self._call_items: dict[int, int] = {}  # the chunk's tool call position -> its output index
        self._finish: str | None = None
        self._tokens: Tokens | None = None
        self._ended = False

    def _event(self, kind: str, data: Body, out: list[bytes]) -> None:
        data = {"type": kind, **data, "sequence_number": self._sequence}
        self._sequence += 1
        out.append(b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n")

    def feed(self, item: StreamItem, out: list[bytes]) -> None:
        if self._ended:
            return
        if item is DONE:
            self._complete(out)
        elif isinstance(item, StreamError):
            self._fail(item, out)
        elif isinstance(item, Chunk):
            self._chunk(item, out)

    def _start(self, chunk: Chunk | None, out: list[bytes]) -> None:
        self._started = True
        if chunk is not None:
            self._shape.identify(chunk.id)
            if chunk.model:
                self._shape.model = chunk.model
        response = self._shape.response("in_progress", [], None)
        self._event("response.created", {"response": response}, out)
        self._event("response.in_progress", {"response": response}, out)

    def _chunk(self, chunk: Chunk, out: list[bytes]) -> None:
        if not self._started:
            self._start(chunk, out)
        if chunk.text:
            if self._text_item is None or self._open != self._text_item:
                self._text_item = self._add(_message_item(self._next_id("msg"), "", "in_progress"), out)
                part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                self._event("response.content_part.added", {**self._where(self._text_item), "part": part}, out)
                self._texts[self._text_item] = []
                self._delta_head = _TEXT_DELTA_HEAD % (orjson.dumps(self._output[self._text_item]["id"]),
                                                       self._text_item)
            self._texts[self._text_item].append(chunk.text)
            out.append(self._delta_head + orjson.dumps(chunk.text) + _TEXT_DELTA_TAIL % self._sequence)
            self._sequence += 1
        for call in chunk.calls or ():
            index = self._call_items.get(call.position)
            if index is None:
                index = self._call_items[call.position] = self._add(
                    _call_item(self._next_id("fc"), call.id or "", call.name or "", "", "in_progress"), out
                )
            if call.arguments:
                self._output[index]["arguments"] += call.arguments
                self._event("response.function_call_arguments.delta",
                            {"item_id": self._output[index]["id"], "output_index": index, "delta": call.arguments},
                            out)
        if chunk.finish is not None:
            self._finish = chunk.finish
        if chunk.tokens is not None:
            self._tokens = chunk.tokens

    def _next_id(self, prefix: str) -> str:
        return self._shape.item_id(prefix, len(self._output))

    def _where(self, index: int) -> Body:
        return {"item_id": self._output[index]["id"], "output_index": index, "content_index": 0}

    def _add(self, item: Body, out: list[bytes]) -> int:
        self._close(out)
        index = self._open = len(self._output)
        self._output.append(item)
        self._event("response.output_item.added", {"output_index": index, "item": item}, out)
        return index

    def _close(self, out: list[bytes]) -> None:
        """The `...done` events of the item being written, which is then complete."""
        index = self._open
        if index is None:
            return
        self._open = None
        item = self._output[index]
        if item["type"] == "message":
            text = "".join(self._texts.get(index, ()))
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            self._event("response.output_text.done", {**self._where(index), "text": text, "logprobs": []}, out)
            self._event("response.content_part.done", {**self._where(index), "part": part}, out)
            self._output[index] = _message_item(item["id"], text, "completed")
        else:
            self._event("response.function_call_arguments.done", {
                "item_id": item["id"], "output_index": index, "name": item["name"], "arguments": item["arguments"],
            }, out)
            item["status"] = "completed"
        self._event("response.output_item.done", {"output_index": index, "item": self._output[index]}, out)

    def _complete(self, out: list[bytes]) -> None:
        if not self._started:
            self._start(None, out)
        self._close(out)
        status, reason = _status(self._finish)
        response = self._shape.response(status, self._output, self._tokens or Tokens(), reason=reason)
        self._event(f"response.{status}", {"response": response}, out)
        self._ended = True

    def _fail(self, error: StreamError, out: list[bytes]) -> None:
        if not self._started:
            self._start(None, out)
        code = error.code or error.type or "server_error"
        self._event("error", {"code": code, "message": error.message, "param": None}, out)
        response = self._shape.response("failed", self._output, self._tokens,
                                        error={"code": "server_error", "message": error.message})
        self._event("response.failed", {"response": response}, out)
        self._ended = True
