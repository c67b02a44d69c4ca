"""The soak run's clients: agents sending chats (some hanging up, some asking for a held tool), a
human reviewer deciding holds, and the tally of what they all saw. `bench/soak.py` runs them.

Every response is read to its end and checked as a client would: a completion, a stream ending in
`[DONE]` or in an error event, or an error in OpenAI's shape with a documented status. A share of
the plain questions is asked in Anthropic's and OpenAI's Responses shapes instead (`/v1/messages`,
`/v1/responses`), and checked in theirs.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter
from collections.abc import Coroutine
from typing import Any

import aiohttp
import orjson

MASTER = "sk-soak-master-0123456789"
BUDGETED = "sk-soak-budgeted-0123456789"
CAPPED = "sk-soak-capped-0123456789"
# A tool whose every call waits for a human: the run's reviewer approves or denies each one.
HELD_TOOL = "send_payment"
PAYMENT = {"type": "function", "function": {
    "name": HELD_TOOL, "description": "Send a payment.",
    "parameters": {"type": "object", "properties": {"to": {"type": "string"}, "amount": {"type": "number"}},
                   "required": ["to", "amount"]}}}
# Statuses a client may get, each for a documented reason; anything else (a 500 above all) is a bug.
EXPECTED = {
    200,
    403,  # a policy denial
    429,  # the capped key's budget, or an upstream's 429 the gateway could not route around
    502, 503, 504,  # every deployment failed, breakers open, or the upstream timed out
}


class Tally:
    """What the clients and the reviewer saw, by phase of the run (warm-up, before/during/after an outage)."""

    def __init__(self) -> None:
        self.sent = 0
        self.sent_to: Counter[str] = Counter()  # requests by path under /v1
        self.abandoned = 0  # streams the client closed after the first chunk
        self.held: Counter[str] = Counter()  # answers to requests offering the held tool: "approved", "denied", "other"
        self.decided: Counter[str] = Counter()  # the reviewer's decisions: "approve", "deny"
        self.review_lag: list[float] = []  # seconds from each hold to its decision
        self.loops: Counter[tuple[str, int]] = Counter()  # looping agents: (the step expected, status)
        self.phase = "warm-up"  # before, during or after the outage (or "before" all along)
        self.statuses: dict[str, Counter[int]] = {}  # by phase
        self.errors: Counter[tuple[int, str]] = Counter()  # refusals by status and OpenAI error code
        self.problems: list[str] = []
        self.examples: list[str] = []  # the first refusal of each kind, as the client read it
        # While a gateway restarts (`--outage restart`), a client may find it gone: counted, not a problem.
        self.restarting = False
        self.unreachable = 0

    def saw(self, status: int) -> None:
        self.statuses.setdefault(self.phase, Counter())[status] += 1

    def success_share(self, phase: str) -> float:
        seen = self.statuses.get(phase, Counter())
        return seen[200] / max(1, sum(seen.values()))

    def problem(self, text: str) -> None:
        if len(self.problems) < 20:
            self.problems.append(text)


CHAT, MESSAGES, RESPONSES = "/chat/completions", "/messages", "/responses"


def check_json(status: int, raw: bytes, tally: Tally, path: str = CHAT) -> None:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        tally.problem(f"{status}: a body that is not JSON: {raw[:200]!r}")
        return
    if not isinstance(body, dict):
        tally.problem(f"{status}: a body that is not an object: {raw[:200]!r}")
        return
    if status == 200:
        answered = {CHAT: isinstance(body.get("choices"), list), MESSAGES: body.get("type") == "message",
                    RESPONSES: body.get("object") == "response"}[path]
        if not answered:
            tally.problem(f"200 from {path} that is not its answer: {raw[:200]!r}")
        return
    error = body.get("error")
    if path == MESSAGES:  # Anthropic's shape: {"type": "error", "error": {"type", "message"}}, no code
        if body.get("type") != "error" or not isinstance(error, dict) or not {"message", "type"} <= error.keys():
            tally.problem(f"{status}: an error not in Anthropic's shape: {raw[:200]!r}")
            return
        kind = f"anthropic {error['type']}"
    elif not isinstance(error, dict) or not {"message", "type", "code"} <= error.keys():
        tally.problem(f"{status}: an error not in OpenAI's shape: {raw[:200]!r}")
        return
    else:
        kind = str(error["code"])
    tally.errors[(status, kind)] += 1
    if tally.errors[(status, kind)] == 1:
        tally.examples.append(f"{status} {kind}: {error['message']}")


# How a stream that is complete ends (or fails after its first byte), by endpoint.
_STREAM_ENDS = {
    CHAT: (b"data: [DONE]",),
    MESSAGES: (b"event: message_stop\n", b"event: error\n"),
    RESPONSES: (b"event: response.completed\n", b"event: response.incomplete\n", b"event: response.failed\n"),
}


def check_stream(raw: bytes, tally: Tally, path: str = CHAT) -> None:
    events = [e for e in raw.split(b"\n\n") if e.strip() and not e.startswith(b":")]
    if not events:
        tally.problem("a 200 stream with no events")
        return
    last = events[-1]
    if path == CHAT and last.startswith(b"data: {") and b'"error"' in last:
        return
    if not last.startswith(_STREAM_ENDS[path]):
        tally.problem(f"a stream from {path} that ended without its last event or an error: ...{raw[-200:]!r}")


def other_shape(path: str, body: dict[str, Any]) -> dict[str, Any]:
    """The chat `body` (a system prompt, one question) asked in another API's shape."""
    system, question = body["messages"][0]["content"], body["messages"][1]["content"]
    if path == MESSAGES:
        return {"model": body["model"], "stream": body["stream"], "max_tokens": body["max_tokens"], "system": system,
                "messages": [{"role": "user", "content": question}]}
    return {"model": body["model"], "stream": body["stream"], "max_output_tokens": body["max_tokens"],
            "instructions": system, "input": question}


_TURNS = itertools.count(1)
# What the gateway does to an agent looping N times (the default thresholds: a note from 3, a hold from
# 5, a denial from 8): indexed by N.
LOOP_STEP = ("none", "none", "none", "note", "note", "hold", "hold", "hold", "deny", "deny")


def looped(repeats: int, turn: int) -> list[dict[str, Any]]:
    """The same call and the same empty result, `repeats` times: what a stuck agent resends."""
    messages: list[dict[str, Any]] = []
    for i in range(repeats):
        call = f"call_{turn}_{i}"
        messages += [
            {"role": "assistant", "content": None, "tool_calls": [{"id": call, "type": "function", "function": {
                "name": "search_mail", "arguments": '{"query": "Q3 sign-off"}'}}]},
            {"role": "tool", "tool_call_id": call, "content": "no results"},
        ]
    return messages


async def client(session: aiohttp.ClientSession, base: str, number: int, stop: float, tally: Tally) -> None:
    """One agent on the gateway at `base` (its `/v1` URL) until `stop`."""
    rng = random.Random(number)
    while time.monotonic() < stop:
        turn = next(_TURNS)  # never the same request twice: a repeat would re-attach to an earlier hold
        stream = rng.random() < 0.5
        key = CAPPED if number % 8 == 0 else BUDGETED
        question = f"Client {number}, turn {turn}: summarise the Q3 report in one line."
        if rng.random() < 0.3:
            question += f" Reply to carol.{number}.{turn}@example.com."
        body: dict[str, Any] = {"model": "gpt-4o", "stream": stream, "max_tokens": 64, "messages": [
            {"role": "system", "content": "Be brief."}, {"role": "user", "content": question}]}
        session_id = f"soak-{number}"
        paying = key == BUDGETED and rng.random() < 0.1
        if paying:  # its call is held until the reviewer decides; a session of its own, decided once
            body["tools"], session_id = [PAYMENT], f"soak-{number}-pay-{turn}"
        repeats = rng.randint(1, 9) if key == BUDGETED and not paying and rng.random() < 0.05 else 0
        if repeats:  # an agent that called the same tool, with the same result, `repeats` times in a row
            body["messages"] += looped(repeats, turn)
            session_id = f"soak-{number}-loop-{turn}"
        path = CHAT
        if key == BUDGETED and not paying and not repeats:  # (budget refusals are counted by their code)
            roll = rng.random()
            path = MESSAGES if roll < 0.15 else RESPONSES if roll < 0.3 else CHAT
            if path != CHAT:
                body = other_shape(path, body)
        headers = {"Authorization": f"Bearer {key}", "x-lockgate-session-id": session_id}
        tally.sent += 1
        tally.sent_to[path] += 1
        try:
            async with session.post(base + path, json=body, headers=headers) as response:
                if stream and response.status == 200 and rng.random() < 0.05:
                    await response.content.readany()  # a client that goes away mid-stream
                    response.close()
                    tally.abandoned += 1
                    continue
                raw = await response.read()
                tally.saw(response.status)
                if response.status not in EXPECTED:
                    tally.problem(f"status {response.status}: {raw[:300]!r}")
                elif response.status == 200 and stream:
                    check_stream(raw, tally, path)
                else:
                    check_json(response.status, raw, tally, path)
                finished = not stream or raw.rstrip().endswith(b"data: [DONE]")  # not cut by an upstream fault
                if repeats:
                    tally.loops[(LOOP_STEP[min(repeats, len(LOOP_STEP) - 1)], response.status)] += 1
                if paying and response.status == 200 and finished:
                    # Approved: the call reaches the client as a tool call; denied: as text, never a tool call.
                    # Past the hold window (a store outage keeps the reviewer from deciding): "awaiting
                    # approval", the decision coming on the next request; soak.checks allows it only then.
                    called = HELD_TOOL.encode() in raw and b"tool_calls" in raw
                    awaiting = not called and b"awaiting human approval" in raw
                    outcome = "approved" if called else "denied" if b"denied" in raw else "awaiting" if awaiting else "other"
                    tally.held[outcome] += 1
                    if outcome == "other":
                        tally.problem(f"a held call answered with neither the call nor a denial: {raw[:300]!r}")
        except aiohttp.ClientError as exc:
            if tally.restarting and isinstance(exc, (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError)):
                tally.unreachable += 1
            else:
                tally.problem(f"the connection to the gateway failed: {exc!r}")


async def reviewer(session: aiohttp.ClientSession, port: int, done: asyncio.Event, tally: Tally) -> None:
    """A human at the approvals queue: every pending hold approved or denied (alternately), until the
    clients are `done` and none is left."""
    admin = f"http://127.0.0.1:{port}/admin/approvals"
    headers = {"Authorization": f"Bearer {MASTER}"}
    while True:
        try:
            async with session.get(admin, params={"status": "pending"}, headers=headers) as response:
                pending = (await response.json())["data"] if response.status == 200 else []
        except aiohttp.ClientError:
            pending = []
        async def decide(approval: dict[str, Any], action: str) -> None:
            try:
                async with session.post(f"{admin}/{approval['id']}/{action}", headers=headers,
                                        json={"by": "soak-reviewer", "reason": "soak"}) as response:
                    if response.status == 200:
                        tally.decided[action] += 1
                        tally.review_lag.append(time.time() - approval["created_at"])
            except aiohttp.ClientError:
                pass  # its gateway is away (restarting): the hold is still pending at the next look

        await asyncio.gather(*(decide(a, "approve" if i % 2 == 0 else "deny") for i, a in enumerate(pending)))
        if not pending and done.is_set():
            return
        await asyncio.sleep(0.2)  # a person polling a queue; the gateway offers no push for it


async def load(session: aiohttp.ClientSession, port: int, work: list[Coroutine[Any, Any, None]], tally: Tally) -> None:
    """Run the clients (and the outage) with the reviewer, who stays until the last hold is decided."""
    done = asyncio.Event()
    review = asyncio.ensure_future(reviewer(session, port, done, tally))
    try:
        await asyncio.gather(*work)
    finally:
        done.set()
        await review
