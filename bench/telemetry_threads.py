"""Where tracing's cost lands, per thread, with the machine's drift cancelled: two gateways at once.

Starts the stub and the loopback OTLP receiver on CPU 1 and two gateways on CPU 0, each a session of
its own (its own autogroup, so the CPU is shared per gateway, not per thread): "metrics" (the
default) and "tracing" (metrics + spans exported to the receiver). Both are loaded by wrk at the same
time, round after round, and each round prints requests/s and the CPU per request of each thread of
each gateway (event loop first, then the span export thread, the metric reader...), from /proc. The
same instant's drift hits both, so the per-thread differences between them are tracing's cost.

    python bench/telemetry_threads.py [--stream] [--agent] [--rounds 4] [--seconds 3] [--concurrency 50]

`--agent` sends a late agent turn (22 messages, `bench/agent_turns.py`) instead of the one-line chat.
The last line gives the means over the rounds: tracing's requests/s as a ratio to metrics', and the
event loop's and the export thread's CPU per request over metrics' event loop.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from agent_turns import TURNS, agent_body
from run import KEY, MESSAGES, MODEL, Target, free_port, gateway_config, pinned, run_wrk, stop, wait_http
from thread_cpu import thread_times

SETTINGS = {"metrics": ("", False), "tracing": ("telemetry: {metrics_export_interval: 5}\n", True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--agent", action="store_true", help="send a late agent turn (22 messages)")
    args = parser.parse_args()
    messages = agent_body(0, TURNS - 1, stream=False)["messages"] if args.agent else MESSAGES
    stub, receiver = free_port(), free_port()
    helpers = [
        subprocess.Popen(pinned([sys.executable, str(HERE / "stub.py"), "--port", str(stub)], "1")),
        subprocess.Popen(pinned([sys.executable, "-m", "gateway.testing.otlp_receiver", "--port", str(receiver)], "1")),
    ]
    gateways: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    with tempfile.TemporaryDirectory(prefix="lockgate-bench-") as tmp:
        body = Path(tmp) / "body.json"
        body.write_text(json.dumps({"model": MODEL, "messages": messages, "max_tokens": 64, "stream": args.stream}))
        try:
            wait_http(f"http://127.0.0.1:{stub}/v1/chat/completions", method="POST", data=b'{"model":"x"}')
            for name, (section, export) in SETTINGS.items():
                config = Path(tmp) / f"{name}.yaml"
                config.write_text(gateway_config(stub) + section)
                env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
                if export:
                    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{receiver}"
                port = free_port()
                gateways[name] = (subprocess.Popen(pinned(
                    [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port),
                     "--log-level", "warning"], "0"), env=env, cwd=tmp, start_new_session=True), port)
            for _, port in gateways.values():
                wait_http(f"http://127.0.0.1:{port}/readyz")

            def load(name: str, seconds: float) -> tuple[str, int, list[float]]:
                process, port = gateways[name]
                before = thread_times(process.pid)
                cell = run_wrk(Target(name, f"http://127.0.0.1:{port}/v1", KEY), body, args.concurrency, seconds, "1")
                after = thread_times(process.pid)
                spent = sorted((sum(after[t]) - sum(before.get(t, (0.0, 0.0))) for t in after), reverse=True)
                return name, cell["requests"], [s for s in spent if s > 0]

            def together(seconds: float) -> list[tuple[str, int, list[float]]]:
                with ThreadPoolExecutor(len(gateways)) as pool:
                    return [f.result() for f in [pool.submit(load, name, seconds) for name in gateways]]

            together(1)  # warm-up
            print("per round: requests/s, then CPU us per request of each busy thread, busiest first")
            ratios, loop_over, export = [], [], []
            for _ in range(args.rounds):
                cells = together(args.seconds)
                print(" | ".join(
                    f"{name}: {count / args.seconds:5.0f} req/s " + " ".join(f"{s / max(count, 1) * 1e6:4.0f}" for s in spent)
                    for name, count, spent in cells
                ), flush=True)
                (_, base_count, base), (_, count, spent) = cells
                per_request = [s / max(count, 1) * 1e6 for s in spent]
                ratios.append(count / max(base_count, 1))
                loop_over.append(per_request[0] - base[0] / max(base_count, 1) * 1e6)
                export.append(per_request[1] if len(per_request) > 1 else 0.0)
            print(f"mean: tracing x{statistics.mean(ratios):.3f} of metrics' requests/s; its event loop "
                  f"{statistics.mean(loop_over):+.0f} us/request, its busiest other thread {statistics.mean(export):.0f} us/request")
        finally:
            for process, _ in gateways.values():
                stop(process)
            for process in helpers:
                stop(process)


if __name__ == "__main__":
    main()
