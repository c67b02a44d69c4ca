"""Telemetry's cost in throughput: one gateway per telemetry setting, same stub, same load, same run.

Built on bench/run.py's harness: the upstream is `bench/stub.py`, the load is wrk (`bench/post.lua`),
the gateway is pinned to CPU 0 and everything else (stub, wrk, the loopback OTLP receiver) to CPU 1.
Settings: telemetry off (`metrics: false`), metrics only (the default), tracing + metrics exported
over OTLP/HTTP to a local receiver (`gateway.testing.otlp_receiver`), and the same at 10% sampling;
with `--only`, also "tracing grpc" (the same over OTLP/gRPC, `gateway.testing.otlp_grpc_receiver`).
Rounds are interleaved so drift on a shared machine hits every setting alike. Reports requests per
second and the gateway's CPU time per request, each as a ratio to "off" (target: tracing < 15%).

    python bench/telemetry_overhead.py [--seconds 3] [--rounds 2] [--concurrency 50] [--no-pin]

`--compare PATH` adds "tracing+metrics" run from another checkout of the repository (`git worktree
add /tmp/base HEAD`), so a change to tracing is measured against the code before it, in the same run.

`--together` loads every setting's gateway at the same time, all pinned to the same CPU, so each
gets an equal share of it (the kernel's fair scheduler, each gateway its own session and so its own
autogroup: shared per gateway, not per thread) and the machine's drift (this VM's speed moves
by ±20% from one second to the next, bench/README.md) hits every setting at the same instant: the
ratio of their throughputs is then the ratio of how much each does with the same CPU, with most of
the noise gone. Sequential rounds (the default) measure each gateway with the core to itself.

`--agent` sends a late agent turn instead of the one-line chat: the whole conversation so far, 22
messages with tool calls and their results (`bench/agent_turns.py`), as agents send on every turn.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from agent_turns import TURNS, agent_body
from harness import metric_sum
from run import (
    KEY,
    MESSAGES,
    MODEL,
    Target,
    cpu_seconds,
    free_port,
    gateway_config,
    pinned,
    run_wrk,
    stop,
    wait_http,
)

SETTINGS: dict[str, tuple[str, str | None]] = {
    # name: (telemetry section, the receiver's protocol, None: no export)
    "off": ("telemetry: {metrics: false}\n", None),
    "metrics": ("", None),
    "tracing+metrics": ("telemetry: {metrics_export_interval: 5}\n", "http"),
    "tracing 10%": ("telemetry: {metrics_export_interval: 5, sample_ratio: 0.1}\n", "http"),
    "tracing grpc": ("telemetry: {metrics_export_interval: 5}\n", "grpc"),  # only with --only
}
DEFAULT_SETTINGS = ("off", "metrics", "tracing+metrics", "tracing 10%")


def main() -> None:
    parser = argparse.ArgumentParser(description="Telemetry on vs off, same run.")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--gateway-cpus", default="0")
    parser.add_argument("--load-cpus", default="1")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--compare", metavar="PATH", help="also run tracing+metrics from this checkout")
    parser.add_argument("--only", help="comma-separated settings to run (off is always run)")
    parser.add_argument("--agent", action="store_true", help="send a late agent turn (22 messages)")
    parser.add_argument("--together", action="store_true",
                        help="load all gateways at once on one shared CPU (drift cancels)")
    args = parser.parse_args()
    keep = {"off", *args.only.split(",")} if args.only else set(DEFAULT_SETTINGS)
    settings = {name: value for name, value in SETTINGS.items() if name in keep}
    trees: dict[str, str] = {}
    if args.compare:
        settings["tracing @compare"] = SETTINGS["tracing+metrics"]
        trees["tracing @compare"] = str(Path(args.compare).resolve())
    gateway_cpus = None if args.no_pin else args.gateway_cpus
    load_cpus = None if args.no_pin else args.load_cpus

    stub_port = free_port()
    receivers = {"http": free_port(), "grpc": free_port()}
    helpers = [
        subprocess.Popen(pinned([sys.executable, str(HERE / "stub.py"), "--port", str(stub_port)], load_cpus)),
        subprocess.Popen(pinned(
            [sys.executable, "-m", "gateway.testing.otlp_receiver", "--port", str(receivers["http"])], load_cpus
        )),
    ]
    if any(protocol == "grpc" for _, protocol in settings.values()):
        helpers.append(subprocess.Popen(pinned(
            [sys.executable, "-m", "gateway.testing.otlp_grpc_receiver", "--port", str(receivers["grpc"])], load_cpus
        )))
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="lockgate-telemetry-bench-") as tmp:
        workdir = Path(tmp)
        bodies = {}
        for kind in ("json", "stream"):
            body: dict[str, Any] = {"model": MODEL, "messages": MESSAGES, "max_tokens": 64}
            if args.agent:
                body["messages"] = agent_body(0, TURNS - 1, stream=False)["messages"]
            if kind == "stream":
                body["stream"] = True
            bodies[kind] = workdir / f"{kind}.json"
            bodies[kind].write_bytes(json.dumps(body).encode())
        gateways: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
        try:
            wait_http(f"http://127.0.0.1:{stub_port}/v1/chat/completions", method="POST", data=b'{"model":"x"}')
            for name, (section, protocol) in settings.items():
                config = workdir / f"{name.replace(' ', '_').replace('%', 'pct')}.yaml"
                config.write_text(gateway_config(stub_port) + section)
                port = free_port()
                env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
                if protocol is not None:
                    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{receivers[protocol]}"
                    env["OTEL_EXPORTER_OTLP_PROTOCOL"] = "grpc" if protocol == "grpc" else "http/protobuf"
                if name in trees:
                    env["PYTHONPATH"] = trees[name]
                gateways[name] = (subprocess.Popen(pinned(
                    [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port),
                     "--log-level", "warning"], gateway_cpus,
                ), env=env, cwd=trees.get(name), start_new_session=args.together), port)
                # (`-m` puts the working directory first on sys.path.) With --together each gateway is a
                # session of its own, so its own autogroup: the scheduler shares the CPU equally between
                # gateways, not between threads (a tracing gateway's export thread would get a share of its own).
            for _, port in gateways.values():
                wait_http(f"http://127.0.0.1:{port}/readyz")
            for kind in ("json", "stream"):
                rates: dict[str, list[float]] = {name: [] for name in settings}
                cpu: dict[str, list[float]] = {name: [] for name in settings}
                for name, (_, port) in gateways.items():  # warm-up
                    run_wrk(Target(name, f"http://127.0.0.1:{port}/v1", KEY), bodies[kind], args.concurrency, 1, load_cpus)
                def measure(name: str, process: subprocess.Popen[bytes], port: int) -> None:
                    target = Target(name, f"http://127.0.0.1:{port}/v1", KEY)
                    before = cpu_seconds(process.pid)
                    cell = run_wrk(target, bodies[kind], args.concurrency, args.seconds, load_cpus)
                    rates[name].append(cell["rps"])
                    cpu[name].append((cpu_seconds(process.pid) - before) / max(cell["requests"], 1))

                for _ in range(args.rounds):
                    if args.together:
                        with ThreadPoolExecutor(len(gateways)) as pool:
                            for done in [pool.submit(measure, name, process, port)
                                         for name, (process, port) in gateways.items()]:
                                done.result()
                    else:
                        for name, (process, port) in gateways.items():
                            measure(name, process, port)
                results[kind] = {"rps": [], "cpu": []}
                base_rps = sum(rates["off"]) / len(rates["off"])
                base_cpu = sum(cpu["off"]) / len(cpu["off"])
                how = "all gateways loaded together on one CPU" if args.together else "one gateway at a time"
                print(f"\n{kind} chat, concurrency {args.concurrency}, {args.rounds} x {args.seconds:g} s, {how}:")
                for name in settings:
                    rps = sum(rates[name]) / len(rates[name])
                    per = sum(cpu[name]) / len(cpu[name])
                    # Paired rounds ran seconds apart: per-round ratios and differences cancel most drift,
                    # and their median ignores a round another process disturbed.
                    paired = statistics.median(r / b for r, b in zip(rates[name], rates["off"], strict=True))
                    over = statistics.median(c - b for c, b in zip(cpu[name], cpu["off"], strict=True))
                    print(f"  {name:16s} {rps:8.0f} req/s (x{rps / base_rps:5.3f}, paired median x{paired:5.3f})   "
                          f"gateway CPU {per * 1e6:6.0f} us/req (x{per / base_cpu:5.3f}, over off {over * 1e6:+4.0f} us)",
                          flush=True)
            # A span that was not exported is work not done: a tracing gateway that dropped spans (a full
            # queue) or lost its export thread would look cheaper than it is. Its own counter says.
            for name, (_, port) in gateways.items():
                if settings[name][1] is not None:
                    print(f"  {name}: spans {span_counts(port)}")
        finally:
            for process, _ in gateways.values():
                stop(process)
            for process in helpers:
                stop(process)


def span_counts(port: int) -> str:
    """The gateway's `lockgate.telemetry.spans` counter by export result, read from `GET /metrics`."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
    except urllib.error.HTTPError as exc:  # metrics off: no /metrics to read
        return f"not known (GET /metrics: HTTP {exc.code})"
    found = metric_sum(text, "lockgate_telemetry_spans_total", "lockgate_export_result")
    return ", ".join(f"{result} {count:.0f}" for result, count in sorted(found.items())) or "(counter not found)"


if __name__ == "__main__":
    main()
