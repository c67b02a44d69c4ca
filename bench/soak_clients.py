"""The soak run's clients: agents sending chats (some hanging up, some asking for a held tool), a
human reviewer deciding holds, and the tally of what they all saw. `bench/soak.py` runs them.

Every response is read to its end and checked as a client would: a completion, a stream ending in
`[DONE]` or in an error event, or an error in OpenAI's shape with a documented status.
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


def check_json(status: int, raw: bytes, tally: Tally) -> None:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        tally.problem(f"{status}: a body that is not JSON: {raw[:200]!r}")
        return
    if status == 200:
        if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
            tally.problem(f"200 without choices: {raw[:200]!r}")
        return
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or not {"message", "type", "code"} <= error.keys():
        tally.problem(f"{status}: an error not in OpenAI's shape: {raw[:200]!r}")
        return
    tally.errors[(status, str(error["code"]))] += 1
    if tally.errors[(status, str(error["code"]))] == 1:
        tally.examples.append(f"{status} {error['code']}: {error['message']}")


def check_stream(raw: bytes, tally: Tally) -> None:
    events = [e for e in raw.split(b"\n\n") if e.strip() and not e.startswith(b":")]
    if not events:
        tally.problem("a 200 stream with no events")
        return
    last = events[-1]
    if last != b"data: [DONE]" and not (last.startswith(b"data: {") and b'"error"' in last):
        tally.problem(f"a stream that ended without [DONE] or an error event: ...{raw[-200:]!r}")


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


async def client(session: aiohttp.ClientSession, url: str, number: int, stop: float, tally: Tally) -> None:
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
        headers = {"Authorization": f"Bearer {key}", "x-lockgate-session-id": session_id}
        tally.sent += 1
        try:
            async with session.post(url, json=body, headers=headers) as response:
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
                    check_stream(raw, tally)
                else:
                    check_json(response.status, raw, tally)
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
