"""Policies' cost in throughput: the same gateway with no rules, and with ten typical rules.

Starts the loopback upstream as a process of its own and two real gateway processes
(`python -m gateway serve`), one without a `policies:` section and one with ten typical rules
(a team model allow-list, a max_tokens cap, PII redaction both ways, two deny patterns, three CEL
rules, two tool rules, loop detection). Drives each with the same closed-loop load (N concurrent
clients, JSON and streaming chat, interleaved rounds so drift hits both alike) and reports requests
per second and the gateway's CPU time per request, each as a ratio to "none".

`--compare PATH` adds "ten @compare": the same ten rules run by another checkout of the repository
(`git worktree add /tmp/base <commit>`), so a change is measured against the code before it, in the
same run.

The requests are agent turns (`agent_turns.py`): each client resends its growing conversation with a
new question in it, so a gateway never sees the same request twice (`--turn fixed`: the old body,
one short conversation identical on every request).

    python bench/policies_overhead.py --seconds 3 --rounds 2 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from agent_turns import agent_body, agent_headers, fixed_body  # noqa: E402
from harness import closed_loop, cpu_seconds, free_port, spawn, stop_all, wait_listening, wait_ready  # noqa: E402

KEY = "sk-bench-master-0123456789"

TEN_RULES = r"""
policies:
  models: {teams: {interns: [gpt-4o]}}
  max_tokens: {limit: 4096}
  pii: {action: redact}
  deny_patterns:
    - {name: no-drops, pattern: "drop\\s+table"}
    - {name: no-jailbreaks, pattern: "ignore (all )?previous instructions"}
  rules:
    - {name: hot-interns, when: "team == 'interns' && request.temperature > 1.0", action: deny}
    - {name: huge-conversations, when: "size(request.messages) > 200", action: deny}
    - {name: confidential-out, phase: post_call, when: "response.content.contains('CONFIDENTIAL')", action: deny}
  tools:
    - {name: no-deletes, tool: "delete_*", action: deny}
    - {name: big-wires, tool: wire_money, action: hold, args_match: {amount: "^[0-9]{6,}"}}
  loops: {}
"""


def config_text(upstream_url: str, store: str, policies: str) -> str:
    return (
        "model_list:\n"
        f"  - model_name: gpt-4o\n    litellm_params: {{model: openai/gpt-4o, api_base: '{upstream_url}', api_key: sk-up-0123456789}}\n"
        f"general_settings: {{master_key: {KEY}}}\nstore: 'sqlite:///{store}'\n" + policies
    )


# Numbers the loads, so no two loads' clients share a conversation (a gateway sees each request once).
_LOADS = itertools.count()


async def load(port: int, seconds: float, concurrency: int, stream: bool, turn: str = "agent") -> tuple[float, int]:
    headers = {"Authorization": f"Bearer {KEY}"}
    if turn == "fixed":
        return await closed_loop(port, fixed_body(stream), {**headers, "x-lockgate-session-id": "bench"},
                                 seconds, concurrency)
    first = next(_LOADS) * concurrency

    def body(client: int, request: int) -> tuple[dict[str, object], dict[str, str]]:
        return agent_body(first + client, request, stream), agent_headers(first + client, request)

    return await closed_loop(port, body, headers, seconds, concurrency)


async def run(args: argparse.Namespace) -> None:
    upstream_port = free_port()
    upstream = spawn(["gateway.testing.upstream", "--port", str(upstream_port)])
    await wait_listening(upstream_port)
    upstream_url = f"http://127.0.0.1:{upstream_port}/v1"
    processes: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        settings = [("none", "", None), ("ten rules", TEN_RULES, None)]
        if args.compare:
            settings.append(("ten @compare", TEN_RULES, str(Path(args.compare).resolve())))
        for name, policies, tree in settings:
            slug = name.replace(" ", "-").replace("@", "")
            path = Path(tmp) / f"{slug}.yaml"
            path.write_text(config_text(upstream_url, str(Path(tmp) / f"{slug}.db"), policies))
            port = free_port()
            processes[name] = (spawn(["gateway", "serve", "--config", str(path), "--port", str(port),
                                      "--log-level", "warning"], tree), port)
        try:
            for _, port in processes.values():
                await wait_ready(port)
            for stream in (False, True):
                rates: dict[str, list[float]] = {name: [] for name in processes}
                cpu: dict[str, list[float]] = {name: [] for name in processes}
                for _, port in processes.values():  # warm-up
                    await load(port, min(1.0, args.seconds), args.concurrency, stream, args.turn)
                for _ in range(args.rounds):
                    for name, (process, port) in processes.items():
                        before = cpu_seconds(process.pid)
                        rate, count = await load(port, args.seconds, args.concurrency, stream, args.turn)
                        rates[name].append(rate)
                        cpu[name].append((cpu_seconds(process.pid) - before) / max(count, 1))
                base = sum(rates["none"]) / len(rates["none"])
                base_cpu = sum(cpu["none"]) / len(cpu["none"])
                print(f"\n{'stream' if stream else 'json'} chat, {args.turn} turns, concurrency {args.concurrency}:")
                for name, values in rates.items():
                    mean = sum(values) / len(values)
                    per = sum(cpu[name]) / len(cpu[name])
                    print(f"  {name:12s} {mean:8.0f} req/s (x{mean / base:5.3f})   gateway CPU {per * 1e6:6.0f} us/req"
                          f" (x{per / base_cpu:5.3f})")
        finally:
            everything = [process for process, _ in processes.values()] + [upstream]
            stop_all(everything)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--compare", metavar="PATH", help="also run the ten rules with this checkout's code")
    parser.add_argument("--turn", choices=("agent", "fixed"), default="agent",
                        help="agent: growing conversations, a new question each request; fixed: one body repeated")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
