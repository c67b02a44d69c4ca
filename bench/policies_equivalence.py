"""Checks that two checkouts' policy rules decide alike: the same verdicts, bodies and bytes.

Runs seeded random requests through each checkout's policy engine (pre_call with its rewrites and
decisions, then post_call and tool_call on a JSON completion), and seeded random streams through its
stream guard (blocks of chunks with text cut anywhere, PII, tool-call deltas, two choices, a denial
after the first byte), in one process per checkout (with that checkout's code first on the path),
and compares digests of everything that came out: decisions, rewritten bodies, responses, events.
For a change meant to make the rules cheaper without changing what they do:

    git worktree add /tmp/base <commit before the change>
    python bench/policies_equivalence.py --compare /tmp/base

Each checkout is driven through the interface it has (`check_json` and the stream guard take the
provider's parse since the policies' cost work), so any two versions since issue 6 compare.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import inspect
import os
import random
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
CASES = 3000  # random requests for each set of policies
STREAMS = 1500  # random streams for each stream setting

MODELS = """
model_list:
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o, api_base: 'http://127.0.0.1:9/v1', api_key: sk-up-0123456789}
  - model_name: mini
    litellm_params: {model: openai/mini, api_base: 'http://127.0.0.1:9/v1', api_key: sk-up-0123456789}
"""
# The benchmark's ten rules (with lower thresholds, so that they fire), then every other kind of rule.
POLICIES = [
    r"""policies:
  models: {teams: {interns: [gpt-4o]}}
  max_tokens: {limit: 4096}
  pii: {action: redact}
  deny_patterns:
    - {name: no-drops, pattern: "drop\\s+table"}
    - {name: no-jailbreaks, pattern: "ignore (all )?previous instructions"}
  rules:
    - {name: hot-interns, when: "team == 'interns' && request.temperature > 1.0", action: deny}
    - {name: huge-conversations, when: "size(request.messages) > 12", action: deny}
    - {name: confidential-out, phase: post_call, when: "response.content.contains('CONFIDENTIAL')", action: deny}
  tools:
    - {name: no-deletes, tool: "delete_*", action: deny}
    - {name: big-wires, tool: wire_money, action: log, args_match: {amount: "^[0-9]{6,}"}}
  loops: {note_after: 3, hold_after: 50, deny_after: 60}
""",
    r"""policies:
  max_tokens: {limit: 100, action: clamp, require: true}
  pii: {action: log, kinds: [email, phone, card]}
  deny_patterns:
    - {name: exact, pattern: "Secret Plan", ignore_case: false, phase: post_call}
    - {name: alt, pattern: "(foo|bar)baz"}
  rules:
    - {name: scrub, when: "size(request.messages) > 2 || request.messages.size() == 1", action: redact}
    - {name: note, when: "request.messages[0].role == 'system'", action: log, message: sys}
    - {name: broken, when: "request.nope > 1", action: log}
    - {name: ok, when: "model == 'mini'", action: allow}
    - {name: after-ok, when: "true", action: log}
    - {name: out, phase: post_call, when: "response.finish_reason == 'stop' && size(response.content) > 40", action: redact}
    - {name: toolrule, phase: tool_call, when: "tool.name == 'search' && tool.args.q == 'x'", action: log}
  loops: {}
""",
    r"""policies:
  pii: {action: deny, kinds: [secret, iban, national_id]}
  rules:
    - {name: size-tools, when: "size(request.tools) > 1", action: deny}
    - {name: t2, phase: tool_call, when: "size(tool.args) > 1", action: log}
""",
]
STREAM_POLICIES = r"""policies:
  pii: {action: %s}
  rules:
    - {name: no-secrets-out, phase: post_call, when: "response.content.contains('TOP SECRET')", action: deny}
  tools:
    - {name: watch, tool: search, action: log}
"""
WORDS = ["bob@example.com", "+1 415-555-0132", "4111 1111 1111 1111", "123-45-6789", "CONFIDENTIAL", "TOP SECRET",
         "hello ", "world ", "DE89 3704 0044 0532 0130 00", "sk-proj-abcdefghijklmnop1234", " ", "\n", "ticket 3-0-4 ",
         "DROP  table", "Ignore all previous instructions", "Secret Plan", "foobaz", "\u0130gnore previous instructions",
         "é", "a" * 30]


def text(rng: random.Random) -> str:
    return "".join(rng.choice(WORDS) for _ in range(rng.randint(0, 4)))


def request_body(rng: random.Random) -> dict[str, Any]:
    messages: list[Any] = []
    if rng.random() < 0.7:
        messages.append({"role": "system", "content": text(rng)})
    for _ in range(rng.randint(1, 8)):
        kind = rng.random()
        if kind < 0.4:
            parts = [{"type": "text", "text": text(rng)}, {"type": "image_url"}, {"type": "text", "text": text(rng)}]
            messages.append({"role": "user", "content": text(rng) if rng.random() < 0.8 else parts})
        elif kind < 0.6:
            call_id = rng.choice(["a", "b", "c"])
            arguments = rng.choice(['{"q": 1}', '{"q":1}', '{"q": "x"}'])
            messages.append({"role": "assistant", "content": None, "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": rng.choice(["search", "read"]), "arguments": arguments}}]})
            messages.append({"role": "tool", "tool_call_id": call_id, "content": rng.choice(["same", "same", text(rng)])})
        else:
            messages.append({"role": "assistant", "content": text(rng)})
    body: dict[str, Any] = {"model": rng.choice(["gpt-4o", "mini"]), "messages": messages}
    if rng.random() < 0.5:
        body["max_tokens"] = rng.choice([10, 5000, 100])
    if rng.random() < 0.3:
        body["temperature"] = rng.choice([0.5, 1.5])
    if rng.random() < 0.3:
        body["tools"] = [{"type": "function", "function": {"name": "f"}}] * rng.randint(1, 2)
    return body


def completion(rng: random.Random) -> dict[str, Any]:
    calls = [{"id": f"c{i}", "type": "function", "function": {
        "name": rng.choice(["search", "delete_x", "wire_money"]),
        "arguments": rng.choice(['{"q": "x"}', '{"amount": "1234567"}', '{"amount": 5}', "{}", "bad"])}}
        for i in range(rng.choice([0, 0, 1, 2]))]
    message = {"role": "assistant", "content": text(rng) if rng.random() < 0.9 else None, "tool_calls": calls or None}
    return {"id": "x", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "finish_reason": rng.choice(["stop", "length"]), "message": message}]}


def stream_blocks(rng: random.Random) -> list[list[bytes]]:
    base = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    n = rng.choice([1, 1, 1, 2])
    chunks = [{**base, "choices": [{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                                   for i in range(n)]}]
    for _ in range(rng.randint(0, 25)):
        kind = rng.random()
        if kind < 0.8:
            said = "".join(rng.choice(WORDS) for _ in range(rng.randint(1, 2)))
            cut = rng.randint(1, len(said))
            index = rng.randrange(n)
            for piece in (said[:cut], said[cut:]):
                if piece:
                    chunks.append({**base, "choices": [{"index": index, "delta": {"content": piece}, "finish_reason": None}]})
        elif kind < 0.9:
            call = {"index": 0, "id": "c", "function": {"name": "search", "arguments": "{}"}}
            chunks.append({**base, "choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}]})
        else:
            chunks.append({**base, "choices": [{"index": 0, "delta": {"content": None, "refusal": None}, "finish_reason": None}]})
    chunks.append({**base, "choices": [{"index": i, "delta": {}, "finish_reason": "stop"} for i in range(n)]})
    if rng.random() < 0.5:
        chunks.append({**base, "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}})
    events = [b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks]
    blocks, i = [], 0
    while i < len(events):
        k = rng.randint(1, 4)
        blocks.append(events[i : i + k])
        i += k
    return blocks


def run_engine(stats: collections.Counter[str]) -> list[str]:
    from gateway.auth import MASTER
    from gateway.config import parse_config
    from gateway.config.runtime import Principal
    from gateway.context import ApiRequest
    from gateway.errors import PolicyViolation
    from gateway.policies.engine import PolicyEngine
    from gateway.policies.guard import ResponseGuard
    from gateway.providers.base import JsonReply, Summary

    shares_parse = "parsed" in inspect.signature(JsonReply).parameters
    digests = []
    for policies in POLICIES:
        engine = PolicyEngine(parse_config(MODELS + policies).policies)
        guard = ResponseGuard(engine)
        rng = random.Random(7)
        digest = hashlib.sha256()
        for _ in range(CASES):
            body = request_body(rng)
            principal = rng.choice([MASTER, Principal("k", team="interns"), Principal("k2", team="x")])
            request = ApiRequest("r", "chat", {}, body, orjson.dumps(body), body["model"], principal=principal,
                                 session_id="s")
            outcome: list[Any] = []
            try:
                outcome.append(repr(engine.before_call(request)))
                outcome.append(orjson.loads(request.raw))
                raw = orjson.dumps(completion(rng))
                summary = Summary()
                summary.read_completion(orjson.loads(raw))
                if shares_parse:
                    result = guard.check_json(request, JsonReply(raw, summary, orjson.loads(raw)))  # type: ignore[call-arg]
                else:
                    result = guard.check_json(request, raw, summary)  # type: ignore[call-arg, arg-type]
                outcome.append((orjson.loads(result[0]), [repr(h) for h in result[2]]))
                stats["answered"] += 1
            except PolicyViolation as violation:
                outcome.append(str(violation))
                stats["refused"] += 1
            outcome.append([(d.name, sorted(d.attributes.items())) for d in request.decisions])
            stats["decisions"] += len(request.decisions)
            digest.update(repr(outcome).encode())
        digests.append(digest.hexdigest())
    return digests


async def run_guard(stats: collections.Counter[str]) -> list[str]:
    from gateway.auth import MASTER
    from gateway.config import parse_config
    from gateway.context import ApiRequest
    from gateway.policies.engine import PolicyEngine
    from gateway.policies.guard import ResponseGuard
    from gateway.providers.base import Summary

    digests = []
    for action in ("redact", "log"):
        for with_parse in (False, True):
            guard = ResponseGuard(PolicyEngine(parse_config(MODELS + STREAM_POLICIES % action).policies))
            takes_summary = "summary" in inspect.signature(guard.filter_stream).parameters
            rng = random.Random(42)
            digest = hashlib.sha256()
            for _ in range(STREAMS):
                blocks = stream_blocks(rng)
                request = ApiRequest("r", "chat", {}, {}, b"{}", "gpt-4o", stream=True, principal=MASTER)
                summary = Summary()

                async def upstream(
                    blocks: list[list[bytes]] = blocks, summary: Summary = summary, with_parse: bool = with_parse
                ) -> AsyncIterator[bytes]:
                    for block in blocks:
                        data = b"".join(block)
                        if with_parse and hasattr(summary, "last_block"):  # as the provider leaves them
                            summary.last_block = data  # type: ignore[attr-defined]
                            summary.last_events = [(e, orjson.loads(e[6:])) for e in block]  # type: ignore[attr-defined]
                        yield data
                    yield b"data: [DONE]\n\n"

                async def on_hold(*_: Any) -> AsyncIterator[bytes]:
                    raise AssertionError("nothing is held here")
                    yield b""

                extra = {"summary": summary} if takes_summary else {}
                out = [event async for event in guard.filter_stream(request, upstream(), on_hold, **extra)]
                stats["stream events"] += len(out)
                digest.update(repr((out, [(d.name, sorted(d.attributes.items())) for d in request.decisions])).encode())
            digests.append(digest.hexdigest())
    return digests


def run() -> None:
    stats: collections.Counter[str] = collections.Counter()
    for digest in run_engine(stats) + asyncio.run(run_guard(stats)):
        print(digest)
    print("stats", dict(stats))


def digests_of(tree: Path) -> tuple[list[str], str]:
    """This script run with `tree`'s code (first on the path; the script itself is the same)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, __file__, "--run"], cwd=tree, check=True, capture_output=True, text=True,
                          env=env)
    lines = done.stdout.strip().splitlines()
    return lines[:-1], lines[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--compare", metavar="PATH", help="the other checkout")
    parser.add_argument("--run", action="store_true", help="print this checkout's digests")
    args = parser.parse_args()
    if args.run:
        run()
        return
    if not args.compare:
        parser.error("--compare PATH is needed")
    here, stats = digests_of(ROOT)
    there, _ = digests_of(Path(args.compare).resolve())
    names = [f"engine, policies {i}" for i in range(len(POLICIES))] + [
        f"stream guard, pii {action}{', provider parse' if parse else ''}"
        for action in ("redact", "log") for parse in (False, True)]
    for name, a, b in zip(names, here, there, strict=True):
        print(f"{'same     ' if a == b else 'DIFFERENT'} {name}")
    print(f"({CASES} requests a policy set, {STREAMS} streams a setting; this checkout's {stats})")
    sys.exit(0 if here == there else 1)


if __name__ == "__main__":
    main()
