"""CPU per request of each thread of one gateway under wrk load: where a setting's cost lands.

Starts the stub (and, with `--otlp`, the loopback OTLP receiver) on CPU 1 and one gateway on CPU 0,
warms it up, runs wrk for `--seconds`, and prints user and system CPU per request for every thread
of the gateway process (the event loop's, the span export thread, the metric reader, the SQLite
thread...), read from /proc/PID/task. Run it alternately for two settings to see which thread pays.

    python bench/thread_cpu.py --config-extra 'telemetry: {metrics: false}'
    python bench/thread_cpu.py --otlp --config-extra 'telemetry: {metrics_export_interval: 5}'
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import KEY, MESSAGES, MODEL, Target, free_port, gateway_config, pinned, run_wrk, stop, wait_http


def thread_times(pid: int) -> dict[str, tuple[float, float]]:
    """(user, system) CPU seconds per thread, keyed by 'name:tid'."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        stat = (task / "stat").read_text()
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        out[f"{name}:{task.name}"] = (int(fields[11]) / tick, int(fields[12]) / tick)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-extra", default="")
    parser.add_argument("--otlp", action="store_true", help="export traces and metrics to a loopback receiver")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--stream", action="store_true")
    args = parser.parse_args()
    stub, receiver, port = free_port(), free_port(), free_port()
    processes = [subprocess.Popen(pinned([sys.executable, str(HERE / "stub.py"), "--port", str(stub)], "1"))]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    if args.otlp:
        processes.append(subprocess.Popen(pinned(
            [sys.executable, "-m", "gateway.testing.otlp_receiver", "--port", str(receiver)], "1")))
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{receiver}"
    with tempfile.TemporaryDirectory(prefix="lockgate-threads-") as tmp:
        body: dict[str, object] = {"model": MODEL, "messages": MESSAGES, "max_tokens": 64}
        if args.stream:
            body["stream"] = True
        body_path = Path(tmp) / "body.json"
        body_path.write_text(json.dumps(body))
        config = Path(tmp) / "config.yaml"
        config.write_text(gateway_config(stub, args.config_extra))
        try:
            gateway = subprocess.Popen(pinned(
                [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port),
                 "--log-level", "warning"], "0"), env=env, cwd=tmp)
            processes.append(gateway)
            wait_http(f"http://127.0.0.1:{port}/readyz")
            target = Target("gateway", f"http://127.0.0.1:{port}/v1", KEY)
            run_wrk(target, body_path, args.concurrency, 2, "1")  # warm-up
            before = thread_times(gateway.pid)
            cell = run_wrk(target, body_path, args.concurrency, args.seconds, "1")
            after = thread_times(gateway.pid)
            requests = max(cell["requests"], 1)
            print(f"{cell['rps']:.0f} req/s; CPU per request by thread (user + system):")
            for name, (user, system) in after.items():
                u = user - before.get(name, (0.0, 0.0))[0]
                s = system - before.get(name, (0.0, 0.0))[1]
                if u + s > 0:
                    print(f"  {name:28s} {u / requests * 1e6:7.1f} + {s / requests * 1e6:6.1f} us")
        finally:
            for process in processes:
                stop(process)


if __name__ == "__main__":
    main()
