"""Governance's own CPU per request, in process: BudgetGate.reserve + settle against the real stores.

The HTTP benchmark (`governance_overhead.py`) measures what a user sees, but on a shared machine its
throughput swings by 2x from run to run. This one drives only the budget stage, the way the pipeline
does (reserve before the call, settle after it), with `concurrency` coroutines on uvloop, and reads
the process's CPU time (including the SQLite thread) per request. Same configurations as the HTTP
benchmark, built from its config text, so the two stay comparable:

  off           no budgets, no limits, record_spend false
  ledger        no budgets, no limits: spend recorded in background batches (the default)
  sqlite        global + team + key budgets and key rpm/tpm on SQLite (leases on, the default)
  redis         the same on Redis (127.0.0.1:6379, a private key prefix removed afterwards)
  sqlite-exact  sqlite with `budgets.leases: false`: a reservation per request
  redis-exact   the same on Redis

    python bench/governance_micro.py --requests 20000 --rounds 3 --concurrency 32 [--only redis]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis
import uvloop

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from governance_overhead import KEY, REDIS, _evalsha_calls, config_text

from gateway.config.loader import parse_config
from gateway.context import ApiRequest
from gateway.governance import Governance
from gateway.providers.base import Usage
from gateway.store import open_store

BODY = b'{"model":"gpt-4o","messages":[{"role":"user","content":"hello there"}],"max_tokens":50}'


async def drive(gov: Governance, config_keys: dict[str, object], requests: int, concurrency: int) -> float:
    """CPU seconds per request for `requests` reserve+settle pairs over `concurrency` coroutines."""
    principal = config_keys[KEY]
    deployment = next(iter(gov.budgets._groups["gpt-4o"].deployments))  # noqa: SLF001 - bench only
    usage = Usage(input_tokens=12, output_tokens=9)
    left = requests

    async def client() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            request = ApiRequest(
                request_id="req", operation="chat", headers={}, body={"model": "gpt-4o", "max_tokens": 50},
                raw=BODY, model="gpt-4o", principal=principal,  # type: ignore[arg-type]
            )
            hold = await gov.budgets.reserve(request)
            await asyncio.sleep(0)  # the upstream call: let the other clients run
            await gov.budgets.settle(request, hold, deployment, usage)

    cpu = time.process_time()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    await gov.spend.flush()  # the batched ledger writes are part of the cost
    await gov.budgets.flush()  # and so are the leases' syncs
    return (time.process_time() - cpu) / requests


async def run(args: argparse.Namespace) -> None:
    prefix = "lgbench-" + uuid.uuid4().hex
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        stores = {
            "off": (f"sqlite:///{Path(tmp) / 'off.db'}", False, False, True),
            "ledger": (f"sqlite:///{Path(tmp) / 'ledger.db'}", False, True, True),
            "sqlite": (f"sqlite:///{Path(tmp) / 'gov.db'}", True, True, True),
            "redis": (f"{REDIS}?prefix={prefix}", True, True, True),
            "sqlite-exact": (f"sqlite:///{Path(tmp) / 'exact.db'}", True, True, False),
            "redis-exact": (f"{REDIS}?prefix={prefix}-exact", True, True, False),
        }
        names = [n for n in stores if not args.only or n in args.only.split(",") or n == "off"]
        govs = {}
        try:
            for name in names:
                url, governed, record, leases = stores[name]
                config = parse_config(config_text("http://127.0.0.1:9/v1", url, governed, record, leases))
                gov = Governance.create(config, open_store(config.store.url))
                await gov.store.start()
                gov.spend.start()
                if gov.budgets.leases is not None:
                    gov.budgets.leases.start()
                govs[name] = (gov, dict(config.keys))
                await drive(gov, dict(config.keys), 500, args.concurrency)  # warm-up, scripts loaded
            rclient = redis.Redis.from_url(REDIS)
            calls: dict[str, int] = {}
            for _ in range(args.rounds):
                for name in names:
                    gov, keys = govs[name]
                    before = _evalsha_calls(rclient)
                    results.setdefault(name, []).append(await drive(gov, keys, args.requests, args.concurrency))
                    if name.startswith("redis"):
                        calls[name] = calls.get(name, 0) + _evalsha_calls(rclient) - before
            rclient.close()
        finally:
            for gov, _ in govs.values():
                if gov.budgets.leases is not None:
                    await gov.budgets.leases.aclose()
                await gov.spend.aclose()
                await gov.store.aclose()
            client = redis.Redis.from_url(REDIS)
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                client.delete(*keys)
            client.close()
    base = min(results["off"]) if "off" in results else 0.0
    print(f"\nreserve+settle, concurrency {args.concurrency}, {args.rounds} x {args.requests} requests, "
          "CPU per request (best round; mean):")
    for name, values in results.items():
        best, mean = min(values), sum(values) / len(values)
        extra = f"   {calls[name] / (args.requests * args.rounds):.3f} script calls/request" if name in calls else ""
        print(f"  {name:12s} {best * 1e6:7.1f} us  ({mean * 1e6:7.1f} us mean)   over off: {(best - base) * 1e6:+7.1f} us"
              + extra)
    print("  (script calls counted on the shared Redis: other clients can only inflate them)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--only", default="", help="comma-separated configurations (default: all)")
    uvloop.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
