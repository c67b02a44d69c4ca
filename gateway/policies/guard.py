"""Post-call and tool-call policies applied to a response, whole (JSON) or as it streams (SSE).

JSON: the completion is parsed once (by the provider, when it can share its parse), checked, and
re-encoded only if a rule changed it.

Streams: text deltas flow to the client as they arrive. When the response's PII rule redacts, each
choice's text goes through a `StreamRedactor`, which holds back the last `LONGEST_MATCH` characters
so a match split across chunks is still caught whole (that tail arrives with the finish chunk).
When tool rules exist, tool-call deltas are held back until the finish chunk, the assembled calls
are checked, and then released, refused, or handed to `on_hold` (hold-for-approval). A refusal
after the first byte is an error event in the stream, never a clean end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from gateway.context import ApiRequest
from gateway.errors import ApprovalsUnavailable, PolicyViolation, stream_error_event
from gateway.policies.engine import HeldCall, PolicyEngine
from gateway.policies.messages import completion_text, rewrite_completion
from gateway.policies.pii import StreamRedactor
from gateway.policies.rules import Verdict
from gateway.providers.base import JsonReply, Summary

# Given the held calls, every tool call and the text already sent, what the client gets instead.
StreamHold = Callable[[ApiRequest, list[HeldCall], Summary, str], AsyncIterator[bytes]]


class ResponseGuard:
    def __init__(self, engine: PolicyEngine) -> None:
        self._engine = engine

    def applies(self, request: ApiRequest) -> bool:
        engine = self._engine
        return engine.inspects_tool_calls or engine.inspects_responses

    # ------------------------------------------------------------------ JSON

    def check_json(self, request: ApiRequest, reply: JsonReply) -> tuple[bytes, dict[str, Any], list[HeldCall]]:
        """The body to send (rewritten if a rule changed it), the parsed completion, and any holds."""
        engine = self._engine
        body, summary = reply.body, reply.summary
        # The provider's parse when it has one (it had to read usage and tool calls out of it).
        completion: dict[str, Any] = reply.parsed if reply.parsed is not None else orjson.loads(body)
        changed = False
        found = engine.response_detector(request)
        if found is not None:
            detector, action = found
            kinds: list[str] = []
            if action == "redact":

                def redact(text: str) -> str:
                    out, hits = detector.redact(text)
                    kinds.extend(hits)
                    return out

                changed = rewrite_completion(completion, redact)
            else:
                kinds = [m.kind for m in detector.find(completion_text(completion))]
            if kinds:
                self._pii_verdict(request, action, kinds)
        finish = summary.finish_reasons[0] if summary.finish_reasons else ""
        names = [c.name for c in summary.tool_calls]
        if engine.check_response(request, completion_text(completion), finish, names):
            changed = rewrite_completion(completion, lambda t: engine.redact_text(t)[0]) or changed
        held = engine.check_tool_calls(request, summary.tool_calls) if engine.inspects_tool_calls else []
        return (orjson.dumps(completion) if changed else body), completion, held

    def _pii_verdict(self, request: ApiRequest, action: str, kinds: list[str]) -> None:
        detail = ", ".join(sorted(set(kinds)))
        if action == "deny":
            self._engine._record(request, Verdict("pii", "deny", "post_call", detail))
            raise PolicyViolation("pii", f"the response contains personal data or secrets ({detail})", phase="post_call")
        self._engine._record(request, Verdict("pii", action, "post_call", detail))

    # ------------------------------------------------------------------ streams

    async def filter_stream(
        self, request: ApiRequest, events: AsyncIterator[bytes], on_hold: StreamHold, summary: Summary | None = None
    ) -> AsyncIterator[bytes]:
        """`summary`: the provider's, whose `last_events` (the parsed chunks of the block it relayed
        last) spare parsing every chunk a second time."""
        engine = self._engine
        found = engine.response_detector(request)
        redact = found is not None and found[1] == "redact"
        redactors: dict[int, StreamRedactor] = {}
        texts: dict[int, list[str]] = {}
        hold_tools = engine.inspects_tool_calls
        calls = Summary()
        held_events: list[bytes] = []
        # What one upstream block turns into goes out as one block: the provider hands over the
        # events that arrived together, and one send per event cost more than the checks themselves.
        out: list[bytes] = []
        try:
            async for data in events:
                # Text redacted as it streams is scanned once per block, not once per event: events
                # that arrived together leave together, so the text of a choice's earlier events in
                # the block can ride in its last one at no cost in latency (one scan of the held-back
                # window per event was most of a stream's policy cost).
                if summary is not None and data is summary.last_block:
                    parsed = summary.last_events
                else:
                    parsed = _parse_block(data)
                block, last = _read_block(parsed, hold_tools)
                for position, (event, chunk, tool, finish, contents) in enumerate(block):
                    if chunk is None:
                        out.append(event)  # [DONE], comments, the usage chunk, an error event
                        continue
                    if tool:
                        calls.read_chunk(chunk)
                        held_events.append(event)
                        continue
                    modified = emptied = False
                    # Most text chunks hold one choice whose delta is only its text: once the text is
                    # held back nothing is left, without asking `_empty`.
                    bare = len(contents) == 1 and len(chunk["choices"]) == 1 and len(contents[0][2]) == 1
                    for index, content, delta in contents:
                        parts = texts.get(index)
                        if parts is None:
                            parts = texts[index] = []
                        parts.append(content)
                        if redact:
                            assert found is not None
                            redactor = redactors.get(index) or redactors.setdefault(index, StreamRedactor(found[0]))
                            if last.get(index) == position:
                                sent = delta["content"] = redactor.feed(content)
                            else:
                                redactor.hold(content)
                                sent = delta["content"] = ""
                            modified = True
                            emptied = emptied or not sent
                    if finish is None:
                        if not modified:
                            out.append(event)
                        elif not (emptied and (bare or _empty(chunk))):  # all its text held back: nothing to send
                            out.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
                        continue
                    # The finish chunk: release what was held back, after the checks.
                    for index, redactor in redactors.items():
                        tail = redactor.flush()
                        if tail:
                            out.append(_content_chunk(chunk, index, tail))
                    kinds = [k for r in redactors.values() for k in r.found]
                    if found is not None and not redact:
                        detector = found[0]
                        kinds = [m.kind for parts in texts.values() for m in detector.find("".join(parts))]
                    if kinds:
                        self._pii_verdict(request, found[1] if found else "redact", kinds)
                    text = "\n".join("".join(parts) for parts in texts.values())
                    engine.check_response(request, text, finish, [c.name for c in calls.tool_calls])
                    held = engine.check_tool_calls(request, calls.tool_calls) if calls.tool_calls else []
                    if held:
                        if out:
                            yield b"".join(out)
                            out.clear()
                        async for hold_event in on_hold(request, held, calls, text):
                            yield hold_event
                        return
                    out.extend(held_events)
                    held_events.clear()
                    out.append((b"data: " + orjson.dumps(chunk) + b"\n\n") if modified else event)
                if out:
                    sent_block = out[0] if len(out) == 1 else b"".join(out)
                    out.clear()
                    yield sent_block
        except (PolicyViolation, ApprovalsUnavailable) as refusal:  # after the first byte: an error event
            out.append(stream_error_event(refusal))
            yield b"".join(out)
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()


def _parse_block(data: bytes) -> list[tuple[bytes, Any]]:
    """A block's events, each with its chunk when it is one (a JSON object), else None."""
    return [(event, orjson.loads(event[6:]) if event.startswith(b"data: {") else None) for event in _split(data)]


# One event of a block, read once: its bytes; its chunk (None: nothing to check, passed on as is);
# whether it is a tool-call delta (held whole); its finish reason; and for each choice with text,
# (the choice's index, the text, the delta holding it).
_Event = tuple[bytes, Any, bool, Any, list[tuple[int, str, dict[str, Any]]]]


def _read_block(parsed: list[tuple[bytes, Any]], hold_tools: bool) -> tuple[list[_Event], dict[int, int]]:
    """The block's events, and for each choice the position of the last event carrying its text."""
    block: list[_Event] = []
    last: dict[int, int] = {}
    for event, chunk in parsed:
        choices = chunk.get("choices") if chunk is not None else None
        if not choices or "error" in chunk:
            block.append((event, None, False, None, []))
            continue
        if hold_tools and _has_tool_calls(choices):
            block.append((event, chunk, True, None, []))  # a tool-call chunk is held whole: its text does not count
            continue
        finish = None
        contents = []
        for choice in choices:
            finish = finish or choice.get("finish_reason")
            delta = choice.get("delta")
            content = delta.get("content") if delta else None
            if isinstance(content, str) and content:
                index = choice.get("index", 0)
                contents.append((index, content, delta))
                last[index] = len(block)
        block.append((event, chunk, False, finish, contents))
    return block, last


def _has_tool_calls(choices: list[Any]) -> bool:
    for choice in choices:  # a loop: `any()` over a generator cost ~1 us an event
        delta = choice.get("delta")
        if delta and delta.get("tool_calls"):
            return True
    return False


def _split(data: bytes) -> list[bytes]:
    if data.count(b"\n\n") == 1 and data.endswith(b"\n\n"):
        return [data]
    return [part + b"\n\n" for part in data.split(b"\n\n") if part]


def _empty(chunk: dict[str, Any]) -> bool:
    """A chunk left with nothing for the client (its text is held back by the redactor)."""
    for choice in chunk.get("choices") or ():
        if choice.get("finish_reason"):
            return False
        for value in (choice.get("delta") or {}).values():
            if value is not None and value != "":
                return False
    return True


def _content_chunk(template: dict[str, Any], index: int, text: str) -> bytes:
    chunk = {k: v for k, v in template.items() if k != "usage"}
    chunk["choices"] = [{"index": index, "delta": {"content": text}, "logprobs": None, "finish_reason": None}]
    return b"data: " + orjson.dumps(chunk) + b"\n\n"
