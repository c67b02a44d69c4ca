"""Governance's cost in throughput: budgets and rate limits on (SQLite, Redis) against off, same run.

Starts the loopback upstream as a process and one real gateway process (`python -m gateway serve`)
per configuration, then drives each with the same closed-loop load (N concurrent clients, JSON chat
with a static key), interleaving rounds so drift on a shared machine hits all alike. Reports
requests/s and the gateway's CPU time per request, each as a ratio to "off", and the median over
rounds of (CPU per request - off's in the same round), which drift disturbs least; likewise the
throughput's "paired median" is the median over rounds of (requests/s / off's in the same round).
For Redis also the script calls (round trips, INFO commandstats `evalsha`) per request and the Redis
CPU they took; Redis is shared, so other clients can only inflate both.

Configurations:
  off             no budgets, no limits, record_spend false: no store call at all
  ledger          no budgets, no limits: spend recorded to the ledger in background batches (the default)
  sqlite          global + team + key budgets and key rpm/tpm on SQLite (leases on, the default)
  redis           the same on Redis
  redis-exact     the same with `budgets.leases: false`: a reservation per request (one script call to
                  reserve, one to settle, shared by concurrent requests)
  redis@compare   (with --compare PATH) the redis configuration run from another checkout, same run

For Redis configurations it also prints the share of requests served from leases (ledger entries
`lres_...`, the rest reserved one by one).

    python bench/governance_overhead.py --seconds 3 --rounds 2 --concurrency 32
    python bench/governance_overhead.py --only redis,redis-exact --compare /tmp/lockgate-base   # before/after
    python bench/governance_overhead.py --only redis --profile off,redis   # py-spy each once first
    python bench/governance_overhead.py --only redis --profile redis --native   # C frames too (the GC)

`governance_micro.py` measures the budget stage alone, in process, which is steadier on a busy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import redis

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import closed_loop, cpu_seconds, free_port, spawn, start, stop_all, wait_listening, wait_ready

MASTER = "sk-bench-master-0123456789"
KEY = "sk-bench-governed-key-0123456789"
REDIS = "redis://127.0.0.1:6379/0"
GOVERNED = (
    "budgets:\n"
    "  global: [{limit_usd: 1000000, period: monthly}]\n"
    "  teams: {bench: [{limit_usd: 1000000, period: daily, max_tokens: 100000000000}]}\n"
)


def config_text(upstream_url: str, store: str, governed: bool, record_spend: bool = True, leases: bool = True) -> str:
    key_limits = ", budgets: [{limit_usd: 1000000, period: total}], rpm: 100000000, tpm: 100000000000" if governed else ""
    text = (
        "model_list:\n"
        f"  - model_name: gpt-4o\n    litellm_params: {{model: openai/gpt-4o, api_base: '{upstream_url}', "
        "api_key: sk-up-0123456789}\n"
        f"general_settings: {{master_key: {MASTER}}}\n"
        f"keys: [{{name: bench, key: {KEY}, team: bench{key_limits}}}]\n"
        f"store: '{store}'\n"
        "telemetry: {metrics: false}\n"
    )
    if governed:
        text += GOVERNED
        if not leases:
            text += "  leases: false\n"
    elif not record_spend:
        text += "budgets: {record_spend: false}\n"
    return text


def _evalsha_calls(client: redis.Redis) -> int:
    return _script_stats(client)[0]


def _script_stats(client: redis.Redis) -> tuple[int, int]:
    """Script calls and the microseconds Redis spent in them, so far (INFO commandstats)."""
    stats = client.info("commandstats")
    calls = usec = 0
    for name in ("cmdstat_evalsha", "cmdstat_eval"):
        calls += int(stats.get(name, {}).get("calls", 0))
        usec += int(stats.get(name, {}).get("usec", 0))
    return calls, usec


def _leased_share(client: redis.Redis, prefix: str) -> tuple[int, int]:
    """(ledger entries of requests served from a lease, all ledger entries) under `prefix`."""
    leased = total = 0
    for entry in client.zscan_iter(f"{prefix}:ledger", count=5000):
        total += 1
        leased += b'"id":"lres_' in entry[0]
    return leased, total


def _paired_median(values: list[float], base: list[float]) -> float:
    """Median over rounds of (this configuration - off): paired rounds ran seconds apart, so the
    machine's drift mostly cancels, and the median ignores a round another process disturbed."""
    return statistics.median(v - b for v, b in zip(values, base, strict=True))


async def load(port: int, seconds: float, concurrency: int) -> tuple[float, int]:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 50}
    return await closed_loop(port, body, {"Authorization": f"Bearer {KEY}"}, seconds, concurrency)


async def profile(name: str, target: tuple[subprocess.Popen[bytes], int], args: argparse.Namespace) -> None:
    """py-spy over one configuration's gateway during one load; prints the top functions."""
    from profile import aggregate  # bench/profile.py (run.py's helpers come with it)

    process, port = target
    raw = HERE / "results" / f"governance-{name}.txt"
    raw.parent.mkdir(exist_ok=True)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    spy = subprocess.Popen([py_spy, "record", "--pid", str(process.pid), "--rate", "250", "--format", "raw",
                            "--output", str(raw), "--duration", str(int(args.seconds)),
                            *(["--native"] if args.native else ["--nonblocking"])],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rate, count = await load(port, args.seconds + 1, args.concurrency)
    spy.wait(timeout=60)
    print(f"profile of '{name}', {rate:.0f} req/s under py-spy (stacks in {raw}):")
    print(aggregate(raw, 45))


async def run(args: argparse.Namespace) -> None:
    upstream_port = free_port()
    helpers = [spawn(["gateway.testing.upstream", "--port", str(upstream_port)])]
    await wait_listening(upstream_port)
    upstream_url = f"http://127.0.0.1:{upstream_port}/v1"
    prefix = "lgbench-" + uuid.uuid4().hex
    rclient = redis.Redis.from_url(REDIS)
    processes = {}
    prefixes = {name: f"{prefix}-{name.replace('@', '-')}" for name in ("redis", "redis-exact", "redis@compare")}
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = f"sqlite:///{Path(tmp) / 'bench.db'}"
        configs = {
            "off": config_text(upstream_url, sqlite, governed=False, record_spend=False),
            "ledger": config_text(upstream_url, f"sqlite:///{Path(tmp) / 'ledger.db'}", governed=False),
            "sqlite": config_text(upstream_url, sqlite, governed=True),
            "redis": config_text(upstream_url, f"{REDIS}?prefix={prefixes['redis']}", governed=True),
            "redis-exact": config_text(upstream_url, f"{REDIS}?prefix={prefixes['redis-exact']}", governed=True,
                                       leases=False),
        }
        if args.compare:
            configs["redis@compare"] = config_text(upstream_url, f"{REDIS}?prefix={prefixes['redis@compare']}",
                                                   governed=True)
        if args.only:
            keep = {"off", "redis@compare", *args.only.split(",")}
            configs = {name: text for name, text in configs.items() if name in keep}
        for name, text in configs.items():
            path = Path(tmp) / f"{name}.yaml"
            path.write_text(text)
            # `-m` puts the working directory (the config's, no code there) first, then PYTHONPATH.
            processes[name] = start(path, {"PYTHONPATH": str(Path(args.compare).resolve())} if name.endswith("@compare") else {})
        try:
            for _, port in processes.values():
                await wait_ready(port)
            rates: dict[str, list[float]] = {name: [] for name in configs}
            cpu: dict[str, list[float]] = {name: [] for name in configs}
            redis_cmds: dict[str, list[float]] = {name: [] for name in configs if name.startswith("redis")}
            redis_usec: dict[str, list[float]] = {name: [] for name in configs if name.startswith("redis")}
            for _, port in processes.values():  # warm-up (also loads the Lua scripts)
                await load(port, min(1.0, args.seconds), args.concurrency)
            for name in filter(None, args.profile.split(",")):
                await profile(name, processes[name], args)
            for _ in range(args.rounds):
                for name, (process, port) in processes.items():
                    before = cpu_seconds(process.pid)
                    commands, usec = _script_stats(rclient)
                    rate, count = await load(port, args.seconds, args.concurrency)
                    if name in redis_cmds:
                        after_calls, after_usec = _script_stats(rclient)
                        redis_cmds[name].append((after_calls - commands) / max(count, 1))
                        redis_usec[name].append((after_usec - usec) / max(count, 1))
                    rates[name].append(rate)
                    cpu[name].append((cpu_seconds(process.pid) - before) / max(count, 1))
            base = sum(rates["off"]) / len(rates["off"])
            base_cpu = sum(cpu["off"]) / len(cpu["off"])
            print(f"\njson chat, concurrency {args.concurrency}, {args.rounds} x {args.seconds:g}s per configuration:")
            for name, values in rates.items():
                mean = sum(values) / len(values)
                per = sum(cpu[name]) / len(cpu[name])
                paired = statistics.median(v / o for v, o in zip(values, rates["off"], strict=True))
                print(f"  {name:13s} {mean:8.0f} req/s (x{mean / base:5.3f}, paired median x{paired:5.3f})   "
                      f"gateway CPU {per * 1e6:6.0f} us/req (x{per / base_cpu:5.3f}; "
                      f"over off: {_paired_median(cpu[name], cpu['off']) * 1e6:+4.0f} us)")
            for name, calls in redis_cmds.items():
                leased, total = _leased_share(rclient, prefixes[name])
                print(f"  {name}: script calls (round trips) per request {min(calls):.3f} (best round), "
                      f"{sum(calls) / len(calls):.3f} (mean); Redis CPU in them {statistics.median(redis_usec[name]):.0f}"
                      f" us/request (median round); served from leases {leased / max(total, 1):.1%} of {total}")
            print("  (Redis is shared: other clients can only inflate its figures; it uses the same two cores)")
        finally:
            everything = [process for process, _ in processes.values()] + helpers
            stop_all(everything)
            keys = list(rclient.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                rclient.delete(*keys)
            rclient.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--profile", default="", help="comma-separated configurations to py-spy once each before the rounds")
    parser.add_argument("--native", action="store_true", help="with --profile: C frames too (e.g. the GC)")
    parser.add_argument("--only", default="", help="comma-separated configurations besides 'off' (default: all)")
    parser.add_argument("--compare", metavar="PATH", help="also run 'redis' from this checkout (e.g. an older commit)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
