"""A soak run: the real gateway under mixed load while its upstream misbehaves, then its books are checked.

Not a speed figure: a bad day compressed into a minute, to find what only shows under sustained
concurrent load (a background thread that dies, a count that drifts, memory that grows, an
unexpected 500). Starts, on loopback:

- the test upstream (`gateway.testing.upstream`, in this process) answering a share of requests with
  a random fault: 429 with Retry-After, 500, 503, a slow answer, a slow first token, a stream cut
  mid-way, a malformed chunk, a dropped connection;
- an OTLP/HTTP receiver (this process) counting the spans it gets;
- one gateway process (or `--replicas N` sharing Redis) with everything on: two deployments and a
  fallback group, retries, breakers, a Redis store (127.0.0.1:6379, its own key prefix; or
  `--store sqlite`), a budgeted key and a key that runs out of budget, the policy benchmark's ten
  rules plus a tool that needs approval, tracing exported to the receiver, metrics.

`--clients` clients (`soak_clients.py`) send JSON and streaming chats for `--seconds`: some with an
email address to redact, some from the capped key, some hanging up mid-stream, some offering the held
tool, some resending a loop of identical tool calls; a reviewer approves or denies every hold through
the admin API. Every response is read to its end and checked. Then it checks what an operator would,
and exits 1 if anything is wrong:

- every response is a completion, a stream ending in `[DONE]` or in an error event, or an error in
  OpenAI's shape with a status the gateway documents; never a 500;
- the gateway logged no traceback;
- every request was counted (`lockgate.requests`), every span exported (`lockgate.telemetry.spans`)
  and received;
- every budget refusal is accounted for in the audit log (repeats folded into counts); hold verdicts, stored holds and decisions agree; none is pending;
- a looping agent is noted, then held, then denied, as the thresholds say;
- nothing is left reserved, no budget is overspent; after an outage the gateway serves again;
- `--outage restart` stops the first gateway with SIGTERM (a deploy) and starts it again on the same
  port and store: the books above must still agree across the restart (the per-process counters are
  not compared), its held calls answered at once, its clients finding it gone counted;
- the gateways' resident memory after the run, against after the warm-up, is printed.

    python bench/soak.py [--seconds 60] [--clients 32] [--seed 1] [--store redis|sqlite] [--replicas 2]
                         [--outage none|store|store-silent|collector|restart]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import free_port, metric_sum, stop_all, wait_ready
from policies_overhead import TEN_RULES
from soak_clients import BUDGETED, CAPPED, HELD_TOOL, MASTER, Tally, client, load

from gateway.audit.folding import occurrences
from gateway.testing.otlp_receiver import Receiver, ReceiverServer
from gateway.testing.tcp_proxy import TcpProxy
from gateway.testing.upstream import Fault, Upstream, UpstreamServer

_FAULTS: list[tuple[float, Fault]] = [
    (0.05, Fault.error(429, "slow down", retry_after=0.05)),
    (0.04, Fault.error(500)),
    (0.03, Fault.error(503)),
    (0.03, Fault(delay=0.3)),
    (0.02, Fault(first_chunk_delay=0.2)),
    (0.02, Fault(after_chunks=3, cut=True)),
    (0.01, Fault(after_chunks=2, malformed=True)),
    (0.01, Fault(drop=True)),
]


class FaultyUpstream(Upstream):
    """The test upstream, drawing each request's fault at random (seeded) from `_FAULTS`."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.record = False  # a minute of requests: do not keep them
        self._random = random.Random(seed)

    def _next(self, model: str = "") -> Fault:
        draw = self._random.random()
        for share, fault in _FAULTS:
            if draw < share:
                return fault
            draw -= share
        return self.default


def config(upstream: str, store: str) -> str:
    deployment = "litellm_params: {{model: openai/{model}, api_base: '{base}', api_key: sk-up-0123456789}}"
    return (
        "model_list:\n"
        f"  - model_name: gpt-4o\n    {deployment.format(model='primary', base=upstream)}\n"
        f"  - model_name: gpt-4o\n    {deployment.format(model='secondary', base=upstream)}\n"
        f"  - model_name: backup\n    {deployment.format(model='backup', base=upstream)}\n"
        "    model_info: {input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}\n"
        "router_settings: {num_retries: 2, timeout: 2, fallbacks: [{gpt-4o: [backup]}]}\n"
        "breakers: {failure_threshold: 5, reset_timeout: 0.5}\n"
        f"general_settings: {{master_key: {MASTER}}}\n"
        f"store: '{store}'\n"
        "keys:\n"
        f"  - {{name: budgeted, key: {BUDGETED}, budgets: [{{limit_usd: 1000, period: daily}}]}}\n"
        f"  - {{name: capped, key: {CAPPED}, budgets: [{{limit_usd: 0.0005, period: total}}]}}\n"
        "telemetry: {metrics_export_interval: 5}\n"
        "approvals: {hold_window: 10}\n"
        + TEN_RULES.replace("  tools:\n", f"  tools:\n    - {{name: payments-need-approval, tool: {HELD_TOOL}, action: hold}}\n")
    )


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def start_gateway(config_path: Path, port: int, otlp_endpoint: str, log: Path) -> subprocess.Popen[bytes]:
    """The gateway as its own process, exporting to `otlp_endpoint`, its output into `log`."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--config", str(config_path), "--port", str(port),
             "--log-level", "warning"],
            env={**{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
                 "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint},
            stdout=out, stderr=subprocess.STDOUT, cwd=config_path.parent,
        )


def audit_entries(store: str, prefix: str, database: Path) -> tuple[Counter[str], Counter[str]]:
    """The audit log's entries by action, and the events they stand for by action (a folded entry
    stands for its repeats), read directly from the run's store; a Redis run's keys are removed."""
    if store == "sqlite":
        with sqlite3.connect(database) as db:
            rows = [(action, orjson.loads(details)) for action, details in db.execute("SELECT action, details FROM audit")]
    else:
        client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
        keys = list(client.scan_iter(match=prefix + ":*"))
        rows = [(e["action"], e["details"]) for e in map(orjson.loads, client.lrange(f"{prefix}:audit", 0, -1))]
        if keys:
            client.delete(*keys)
        client.close()
    events: Counter[str] = Counter()
    for action, details in rows:
        events[action] += occurrences(details)
    return Counter(action for action, _ in rows), events


@dataclass
class Run:
    """What one soak run saw, for the checks."""

    tally: Tally
    warm_sent: int
    elapsed: float
    rss_warm: list[int]  # per replica, KiB
    rss_end: list[int]
    budgets: list[dict[str, Any]]
    pending: int  # holds still awaiting a decision after the reviewer left
    metrics: str
    received: int
    logged: str
    audited: Counter[str]  # events the audit log accounts for, by action (a folded entry counts its repeats)
    audit_written: Counter[str]  # entries written, by action
    restart: Restart | None = None


async def settled_metrics(session: aiohttp.ClientSession, port: int, seconds: float = 30.0) -> str:
    """`GET /metrics` once every span the gateway made is accounted for (exported, failed or dropped).

    Spans leave in batches (up to 5 s), and a batch caught by an outage is retried for up to 10 s;
    this polls another process's counters, so there is no event to wait on.
    """
    deadline = time.monotonic() + seconds
    while True:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
            metrics = await response.text()
        made = sum(metric_sum(metrics, "lockgate_requests_total").values()) + sum(
            metric_sum(metrics, "lockgate_attempts_total").values())
        settled = sum(metric_sum(metrics, "lockgate_telemetry_spans_total").values())
        if settled >= made or time.monotonic() > deadline:
            return metrics
        await asyncio.sleep(0.5)


async def outage(proxy: TcpProxy | None, seconds: float, tally: Tally, silent: bool = False) -> None:
    """Cut what `proxy` stands in front of for the middle third of the run, then bring it back.
    `silent`: a partition instead, its open connections left hanging with no answer and no close."""
    if proxy is None:
        return
    await asyncio.sleep(seconds / 3)
    await asyncio.to_thread(proxy.partition if silent else proxy.down)
    tally.phase = "during"
    await asyncio.sleep(seconds / 3)
    await asyncio.to_thread(proxy.up)
    tally.phase = "after"


GRACE_SECONDS = 10.0  # `lockgate serve`'s timeout_graceful_shutdown


@dataclass
class Restart:
    """`--outage restart`: the first gateway is stopped (SIGTERM, as a deploy does) a third of the way
    in and started again on the same port and store; its clients find it gone meanwhile."""

    start: Callable[[], subprocess.Popen[bytes]]
    port: int
    stopped_in: float = 0.0  # seconds from SIGTERM to exit
    back_in: float = 0.0  # seconds from SIGTERM to ready again

    async def run(self, gateways: list[subprocess.Popen[bytes]], seconds: float, tally: Tally) -> None:
        await asyncio.sleep(seconds / 3)
        tally.phase, tally.restarting = "during", True
        began = time.monotonic()
        gateways[0].send_signal(signal.SIGTERM)
        await asyncio.to_thread(gateways[0].wait, 60)
        self.stopped_in = time.monotonic() - began
        gateways[0] = self.start()
        await wait_ready(self.port)
        self.back_in = time.monotonic() - began
        tally.phase, tally.restarting = "after", False


async def soak(args: argparse.Namespace, ports: list[int], gateways: list[subprocess.Popen[bytes]],
               proxy: TcpProxy | None, restart: Restart | None) -> Run:
    """Warm up, load for `args.seconds` (with the outage, if any), then read the gateways' books.

    Client n talks to replica n % replicas; the reviewer works through the last replica.
    """
    urls = [f"http://127.0.0.1:{port}/v1" for port in ports]
    admin, master = ports[-1], {"Authorization": f"Bearer {MASTER}"}
    tally = Tally()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        warm = time.monotonic() + min(5.0, args.seconds / 4)
        await load(session, admin, [client(session, urls[n % len(urls)], n, warm, tally) for n in range(args.clients)],
                   tally)
        rss_warm, warm_sent = [rss_kib(g.pid) for g in gateways], tally.sent
        tally.phase = "before"
        stop = time.monotonic() + args.seconds
        started = time.monotonic()
        disruption = restart.run(gateways, args.seconds, tally) if restart else outage(
            proxy, args.seconds, tally, silent=args.outage == "store-silent")
        await load(session, admin, [disruption,
                                    *(client(session, urls[n % len(urls)], n, stop, tally) for n in range(args.clients))],
                   tally)
        elapsed, rss_end = time.monotonic() - started, [rss_kib(g.pid) for g in gateways]
        # Every request has finished: the budgets' standing and the gateways' counts are final. Each
        # replica's budgets read gives its leases' unused room back first, so the last read shows all.
        # The reads are requests too, traced and counted.
        for port in ports:
            async with session.get(f"http://127.0.0.1:{port}/admin/budgets", headers=master) as response:
                budgets = (await response.json())["data"]
        async with session.get(f"http://127.0.0.1:{admin}/admin/approvals", params={"status": "pending"},
                               headers=master) as response:
            pending = len((await response.json())["data"])
        # Each replica's /metrics, one after the other: the counters' sums are over all of them.
        metrics = "\n".join([await settled_metrics(session, port) for port in ports])
    return Run(tally, warm_sent, elapsed, rss_warm, rss_end, budgets, pending, metrics, 0, "", Counter(), Counter(),
               restart)


def checks(args: argparse.Namespace, run: Run) -> list[str]:
    """What an operator would check after a bad day; each failure as a sentence."""
    tally, problems = run.tally, list(run.tally.problems)
    store_out = args.outage in ("store", "store-silent")  # what a store outage must cost is not a problem
    requests = sum(metric_sum(run.metrics, "lockgate_requests_total").values())
    attempts = sum(metric_sum(run.metrics, "lockgate_attempts_total").values())
    spans = metric_sum(run.metrics, "lockgate_telemetry_spans_total", "lockgate_export_result")
    if "Traceback" in run.logged:
        problems.append("the gateway logged a traceback:\n" + run.logged[run.logged.index("Traceback"):][:8000])
    # A restarted gateway's counters start again from zero: these checks are for one process's life.
    if args.outage != "restart":
        routes = metric_sum(run.metrics, "lockgate_requests_total", "http_route")
        for path, sent in sorted(tally.sent_to.items()):
            counted = routes.get(f"/v1{path}", 0)
            if counted != sent:
                problems.append(f"{sent} requests sent to /v1{path}, the gateway counted {counted:.0f}")
        # A SERVER span per request and a CLIENT span per upstream attempt: each exported, or (only while
        # the collector was cut off) counted as failed; the receiver got every exported one.
        accounted = sum(spans.values())
        if accounted != requests + attempts:
            problems.append(f"{accounted:.0f} spans accounted for ({spans}), {requests + attempts:.0f} made")
        if args.outage != "collector" and (spans.get("dropped", 0) or spans.get("failed", 0)):
            problems.append(f"spans not exported: {spans}")
        if run.received != spans.get("exported", 0):
            problems.append(f"the receiver got {run.received} spans, the gateway exported {spans.get('exported', 0):.0f}")
    for budget in run.budgets:
        name = f"{budget['scope']}:{budget['id']} ({budget['period']})"
        if budget["spent_usd"] > budget["limit_usd"] + 1e-9:
            problems.append(f"{name}: spent ${budget['spent_usd']} of a ${budget['limit_usd']} limit")
        # Nothing is in flight: every reservation was settled or released, a client hanging up included
        # (a store outage strands the reservations it caught until their TTL sweeps them: not checked).
        if budget["reserved_usd"] and not store_out:
            problems.append(f"{name}: ${budget['reserved_usd']} still reserved with nothing in flight")
    # Every budget refusal is accounted for in the audit log (repeats folded into counts), unless the store
    # was away to write it to.
    refused = tally.errors[(429, "budget_exceeded")]
    if run.audited["budget.refused"] != refused and not store_out:
        problems.append(f"{refused} budget refusals, {run.audited['budget.refused']} audited")
    # Every hold was decided by the reviewer, and no client was left with an "awaiting approval" reply;
    # each hold verdict stored a hold, and each hold and decision is in the audit log.
    if run.pending:
        problems.append(f"{run.pending} holds still pending after the reviewer left")
    # A looping agent gets a note (served), then a hold for the reviewer (served or 403), then a 403.
    for (step, status), count in tally.loops.items():
        if (step == "deny" and status != 403) or (step in ("none", "note") and status == 403):
            problems.append(f"{count} agents looping to the '{step}' step got {status}")
    # uvicorn gives requests in flight 10 s after SIGTERM, then cuts them off: a stop that takes that
    # long was waiting on something that should have ended (held requests did, before session 7).
    if run.restart is not None and run.restart.stopped_in >= GRACE_SECONDS - 0.5:
        problems.append(f"the gateway took {run.restart.stopped_in:.1f} s to stop: its grace period ran out")
    # (A stopping gateway answers its held calls at once, "awaiting approval": allowed in a restart.)
    if tally.held["awaiting"] and not store_out and args.outage != "restart":
        problems.append(f"{tally.held['awaiting']} held calls timed out awaiting a reviewer who could decide")
    decided = sum(tally.decided.values())
    held = (run.audited["policy.hold"], run.audited["approval.hold"],
            run.audited["approval.approve"] + run.audited["approval.deny"])
    if not store_out and held != (decided, decided, decided):
        problems.append(f"{decided} holds decided; audited: {held[0]} hold verdicts, {held[1]} holds, {held[2]} decisions")
    if args.outage != "none":  # back to normal once the outage is over
        before, after = tally.success_share("before"), tally.success_share("after")
        if after < before / 2:
            problems.append(f"no recovery: {after:.0%} of requests served after the outage, {before:.0%} before")
    return problems


def report(args: argparse.Namespace, run: Run, problems: list[str]) -> None:
    tally = run.tally
    print(f"{tally.sent} requests ({run.warm_sent} in the warm-up, then {run.elapsed:.0f} s), {args.clients} clients,"
          f" {args.replicas} replica(s), {args.store} store, outage: {args.outage}")
    print("  by endpoint: " + ", ".join(f"/v1{path} {n}" for path, n in sorted(tally.sent_to.items())))
    for phase, statuses in tally.statuses.items():
        print(f"  {phase:7s} statuses " + ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items())))
    print("refusals by status and code: " + ", ".join(f"{s} {c}: {n}" for (s, c), n in tally.errors.most_common()))
    for example in tally.examples:
        print("  e.g.", example)
    spans = metric_sum(run.metrics, "lockgate_telemetry_spans_total", "lockgate_export_result")
    print(f"spans: {run.received} received; the gateway's counts: {spans}")
    if run.restart is not None:
        print(f"restart: stopped {run.restart.stopped_in:.2f} s after SIGTERM, ready again after"
              f" {run.restart.back_in:.2f} s; {tally.unreachable} requests found it gone")
    print(f"audit: entries written {dict(run.audit_written)}, the events they stand for {dict(run.audited)};"
          f" {tally.errors[(429, 'budget_exceeded')]} budget refusals;"
          f" {tally.abandoned} streams abandoned by their client")
    print("looping agents by the step expected: " + ", ".join(
        f"{step} -> {status}: {n}" for (step, status), n in sorted(tally.loops.items())))
    lag = sorted(tally.review_lag) or [0.0]
    print(f"holds: reviewer decisions {dict(tally.decided)} (after {lag[len(lag) // 2]:.1f} s median,"
          f" {lag[-1]:.1f} s at most); answers to the held tool's requests {dict(tally.held)}")
    print("budgets: " + "; ".join(f"{b['scope']}:{b['id']} spent ${b['spent_usd']:.6f} of ${b['limit_usd']},"
                                  f" reserved ${b['reserved_usd']}" for b in run.budgets))
    for replica, (warm, end) in enumerate(zip(run.rss_warm, run.rss_end, strict=True)):
        print(f"gateway {replica} memory: {warm / 1024:.0f} MiB after the warm-up, {end / 1024:.0f} MiB at the end")
    warnings = Counter(line.split(" WARNING ", 1)[1][:110] for line in run.logged.splitlines() if " WARNING " in line)
    print(f"gateway log: {sum(warnings.values())} warnings")
    for text, count in warnings.most_common(6):
        print(f"  x{count}: {text}")
    for problem in problems[:10] + (["..."] if len(problems) > 20 else []) + problems[max(10, len(problems) - 10):]:
        print("PROBLEM:", problem)
    print("ok" if not problems else f"{len(problems)} problem(s)")


async def main_async(args: argparse.Namespace) -> int:
    upstream = UpstreamServer(FaultyUpstream(args.seed)).start()
    receiver = ReceiverServer(Receiver(keep=False)).start()
    prefix = f"lockgate-soak-{uuid.uuid4().hex[:8]}"
    # The outage's target is reached through a proxy the run cuts: Redis (`store`), or the collector.
    proxy = None
    if args.outage in ("store", "store-silent"):
        proxy = TcpProxy("127.0.0.1", 6379).start()
    elif args.outage == "collector":
        proxy = TcpProxy("127.0.0.1", receiver.port).start()
    redis_port = proxy.port if proxy is not None and args.outage in ("store", "store-silent") else 6379
    otlp = f"http://127.0.0.1:{proxy.port}" if proxy is not None and args.outage == "collector" else receiver.url
    ports = [free_port() for _ in range(args.replicas)]
    with tempfile.TemporaryDirectory(prefix="lockgate-soak-") as tmp:
        path, database = Path(tmp) / "lockgate.yaml", Path(tmp) / "lockgate.db"
        logs = [Path(tmp) / f"gateway-{replica}.log" for replica in range(args.replicas)]
        store_url = f"redis://127.0.0.1:{redis_port}/0?prefix={prefix}" if args.store == "redis" else f"sqlite:///{database}"
        path.write_text(config(upstream.url, store_url))
        gateways = [start_gateway(path, port, otlp, log) for port, log in zip(ports, logs, strict=True)]
        restart = None
        if args.outage == "restart":
            logs.append(Path(tmp) / "gateway-0-restarted.log")
            restart = Restart(lambda: start_gateway(path, ports[0], otlp, logs[-1]), ports[0])
        try:
            for port in ports:
                await wait_ready(port)
            run = await soak(args, ports, gateways, proxy, restart)
        finally:
            stop_all(gateways)  # a graceful stop
            upstream.stop()
            if proxy is not None:
                proxy.stop()
        run.received = receiver.receiver.span_count
        receiver.stop()
        run.logged = "\n".join(log.read_text(errors="replace") for log in logs)
        run.audit_written, run.audited = audit_entries(args.store, prefix, database)
    problems = checks(args, run)
    report(args, run, problems)
    return 1 if problems else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--store", choices=("redis", "sqlite"), default="redis")
    parser.add_argument("--replicas", type=int, default=1, help="gateway processes sharing the store (Redis)")
    parser.add_argument("--outage", choices=("none", "store", "store-silent", "collector", "restart"), default="none",
                        help="cut Redis (with --store redis) or the OTLP collector off for the middle third"
                             " (store-silent: Redis partitioned, its open connections left hanging),"
                             " or restart the first gateway (SIGTERM, then start it again) a third of the way in")
    args = parser.parse_args()
    if args.outage in ("store", "store-silent") and args.store != "redis":
        parser.error("--outage store cuts Redis off: use it with --store redis")
    if args.replicas > 1 and args.store != "redis":
        parser.error("replicas share a Redis store: use --replicas with --store redis")
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
