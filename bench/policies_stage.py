"""The policy stage's own CPU per request, in process: no sockets, no other stage, little noise.

Runs the stage as the pipeline does (`before_call`, then `after_json` or `filter_stream` over the
loopback upstream's own answer, one event per block, or all of it in one block as it mostly
arrives over loopback: ~2 blocks a stream were measured) with the app's hold desk, pause state
and audit on a SQLite store, for the requests `policies_overhead.py` sends (agent turns, each request
new: see `agent_turns.py`; `--turn fixed` for the old single body), with no rules and with its ten
rules. Prints the best of `--rounds` CPU microseconds per request for each, and the
difference: what the rules cost, without the HTTP and routing work that makes the end-to-end
figure noisy on a shared machine.

    python bench/policies_stage.py [--requests 2000] [--rounds 7]
    cd /tmp/base && PYTHONPATH=. python /path/to/this/bench/policies_stage.py   # another checkout's code
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from agent_turns import TURNS, agent_body, agent_headers, fixed_body  # noqa: E402
from policies_overhead import TEN_RULES, config_text  # noqa: E402

from gateway.audit.trail import AuditTrail  # noqa: E402
from gateway.auth import MASTER  # noqa: E402
from gateway.config.loader import parse_config  # noqa: E402
from gateway.context import ApiRequest  # noqa: E402
from gateway.policies.approvals import Approvals  # noqa: E402
from gateway.policies.audit import VerdictAudit  # noqa: E402
from gateway.policies.engine import PolicyEngine  # noqa: E402
from gateway.policies.holds import HoldDesk  # noqa: E402
from gateway.policies.pauses import Pauses  # noqa: E402
from gateway.policies.stage import PolicyStage  # noqa: E402
from gateway.policies.webhook import WebhookAnnouncer  # noqa: E402
from gateway.providers.base import JsonReply, Summary  # noqa: E402
from gateway.providers.fake import build_chunks, build_completion  # noqa: E402
from gateway.store import open_store  # noqa: E402

CLIENTS = 32  # interleaved like the end-to-end bench's concurrent clients
# Whether the code measured reads the provider's parse (since the policies' cost work); the same
# script then measures an older checkout too: `cd /tmp/base && PYTHONPATH=. python <this script>`.
SHARES_PARSE = hasattr(Summary, "last_events")


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request and the upstream's answer to it, prepared before the clock starts."""

    raw: bytes
    session: str
    completion: bytes
    events: list[bytes]


def exchanges(turn: str, stream: bool, count: int, whole: bool) -> list[Exchange]:
    """`count` requests: agent turns of `CLIENTS` interleaved clients, none sent twice (or the fixed body)."""
    prepared = []
    for n in range(count):
        if turn == "fixed":
            body, session = fixed_body(stream), "bench"
        else:
            client, request = n % CLIENTS, n // CLIENTS
            body = agent_body(client, request, stream)
            session = agent_headers(client, request)["x-lockgate-session-id"]
        events = [b"data: " + orjson.dumps(c) + b"\n\n" for c in build_chunks(body, "gpt-4o", False)]
        prepared.append(Exchange(orjson.dumps(body), session, orjson.dumps(build_completion(body, "gpt-4o")),
                                 [b"".join(events)] if whole else events))
    return prepared


async def measure(policies: str, stream: bool, requests: int, rounds: int, tmp: str, whole: bool = False,
                  turn: str = "agent") -> float:
    config = parse_config(config_text("http://127.0.0.1:9/v1", f"{tmp}/{len(policies)}.db", policies))
    store = open_store(config.store.url)
    stage = PolicyStage(PolicyEngine(config.policies))
    desk = HoldDesk(Approvals(store, config.approvals), Pauses(store), WebhookAnnouncer(config.approvals.webhooks))
    stage.attach(desk, VerdictAudit(AuditTrail(store)))
    warm = max(requests // 10, CLIENTS * TURNS)
    # Every request of the warm-up and of every round is a new one (conversations move on).
    prepared = exchanges(turn, stream, warm + rounds * requests, whole)

    async def upstream(events: list[bytes], summary: Summary) -> AsyncIterator[bytes]:
        # As the OpenAI-compatible provider relays a stream: each chunk parsed once, for the summary,
        # the block's parsed events left on it for the policies (the same work with no rules), and
        # [DONE] sent on its own at the end.
        for block in events:
            parsed = []
            for event in block.split(b"\n\n"):
                if event.startswith(b"data: {"):
                    chunk = orjson.loads(event[6:])
                    summary.read_chunk(chunk)
                    parsed.append((event + b"\n\n", chunk))
            if parsed:
                data = b"".join(event for event, _ in parsed) if len(parsed) > 1 else parsed[0][0]
                if SHARES_PARSE:
                    summary.last_block, summary.last_events = data, parsed
                yield data
        yield b"data: [DONE]\n\n"

    async def one(exchange: Exchange) -> None:
        raw = exchange.raw
        request = ApiRequest("bench", "chat", {}, orjson.loads(raw), raw, "gpt-4o", stream=stream,
                             principal=MASTER, session_id=exchange.session)
        assert await stage.before_call(request) is None
        summary = Summary()
        if stream:
            extra = (summary,) if SHARES_PARSE else ()
            async for _ in stage.filter_stream(request, upstream(exchange.events, summary), "d", *extra):
                pass
        else:
            parsed = orjson.loads(exchange.completion)
            summary.read_completion(parsed)
            reply = JsonReply(exchange.completion, summary, *((parsed,) if SHARES_PARSE else ()))
            await stage.after_json(request, reply, "d")

    best = float("inf")
    for exchange in prepared[:warm]:
        await one(exchange)
    for round_ in range(rounds):
        batch = prepared[warm + round_ * requests : warm + (round_ + 1) * requests]
        start = time.process_time()
        for exchange in batch:
            await one(exchange)
        best = min(best, (time.process_time() - start) / requests)
    await stage.aclose()
    await store.aclose()
    return best * 1e6


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{args.turn} turns, the code of {Path(sys.modules['gateway'].__file__ or '').parent.parent}")
    for name, stream, whole in (("json", False, False), ("stream, 1 event a block", True, False),
                                    ("stream, 1 block", True, True)):
            none = await measure("", stream, args.requests, args.rounds, tmp, whole, args.turn)
            ten = await measure(TEN_RULES, stream, args.requests, args.rounds, tmp, whole, args.turn)
            print(f"{name:24s} stage CPU: none {none:6.1f} us/req, ten rules {ten:6.1f} us/req,"
                  f" rules cost {ten - none:6.1f} us/req")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--turn", choices=("agent", "fixed"), default="agent")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
