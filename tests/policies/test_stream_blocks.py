"""The stream guard sends what one upstream block became as one block, with the same bytes as before."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest

from gateway.auth import MASTER
from gateway.config import parse_config
from gateway.context import ApiRequest
from gateway.policies.engine import HeldCall, PolicyEngine
from gateway.policies.guard import ResponseGuard
from gateway.providers.base import Summary
from gateway.providers.fake import build_chunks

CONFIG = """
model_list:
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o, api_base: 'http://127.0.0.1:9/v1', api_key: sk-up-0123456789}
policies:
  pii: {action: redact}
  rules:
    - {name: no-secrets-out, phase: post_call, when: "response.content.contains('TOP SECRET')", action: deny}
"""
SAID = "mail bob@example.com or call +1 415-555-0132 about the Q3 report, please"


def events(said: str) -> list[bytes]:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": said}], "stream": True}
    chunks = [b"data: " + orjson.dumps(c) + b"\n\n" for c in build_chunks(body, "gpt-4o", False)]
    return [*chunks, b"data: [DONE]\n\n"]


async def guarded(blocks: list[bytes]) -> list[bytes]:
    engine = PolicyEngine(parse_config(CONFIG).policies)
    request = ApiRequest("r", "chat", {}, {}, b"{}", "gpt-4o", stream=True, principal=MASTER)

    async def upstream() -> AsyncIterator[bytes]:
        for block in blocks:
            yield block

    async def on_hold(request: ApiRequest, held: list[HeldCall], calls: Summary, text: str) -> AsyncIterator[bytes]:
        raise AssertionError("nothing is held here")
        yield b""

    return [out async for out in ResponseGuard(engine).filter_stream(request, upstream(), on_hold)]


def text_of(stream: bytes) -> str:
    text = []
    for event in stream.split(b"\n\n"):
        if event.startswith(b"data: {"):
            for choice in orjson.loads(event[6:]).get("choices", []):
                text.append(choice["delta"].get("content") or "")
    return "".join(text)


async def test_events_that_arrived_together_leave_together_redacted() -> None:
    one_by_one = await guarded(events(SAID))
    together = await guarded([b"".join(events(SAID))])
    assert len(together) == 1
    said = "You said: mail [REDACTED:email] or call [REDACTED:phone] about the Q3 report, please"
    for stream in (together[0], b"".join(one_by_one)):
        assert text_of(stream).endswith(said)
        assert stream.endswith(b"data: [DONE]\n\n")
    # The block's text rides in fewer events (scanned once), none of them empty.
    assert 0 < contents(together[0]) < contents(b"".join(one_by_one))
    assert together[0].count(b'"content":""') == 1  # the role chunk, as the model sent it


async def test_text_held_back_in_one_block_is_released_by_the_next() -> None:
    stream = events(SAID)
    finish = next(i for i, e in enumerate(stream) if b'"finish_reason":"stop"' in e)
    blocks = [b"".join(stream[:8]), b"".join(stream[8:finish]), b"".join(stream[finish:])]
    out = await guarded(blocks)
    assert len(out) == 3
    assert "".join(text_of(b) for b in out).endswith("[REDACTED:email] or call [REDACTED:phone] about the Q3 report, please")
    assert "bob@" not in "".join(text_of(b) for b in out)


def contents(stream: bytes) -> int:
    return sum(1 for e in stream.split(b"\n\n") if b'"content"' in e)


@pytest.mark.parametrize("split", [1, 3])
async def test_a_denial_after_the_first_byte_follows_what_was_already_checked(split: int) -> None:
    stream = events("this is TOP SECRET")
    blocks = [b"".join(stream[i : i + split]) for i in range(0, len(stream), split)]
    out = b"".join(await guarded(blocks))
    assert b'"code":"policy_violation"' in out and b"no-secrets-out" in out
    assert b"[DONE]" not in out
    assert "TOP SECRET" in text_of(out)  # sent before the finish chunk's check, as before
