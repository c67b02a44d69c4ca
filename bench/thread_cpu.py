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
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import run_wrk
from single import loaded_gateway


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
    with loaded_gateway(args.config_extra, args.otlp, args.stream, args.concurrency) as gateway:
        before = thread_times(gateway.process.pid)
        cell = run_wrk(gateway.target, gateway.body, args.concurrency, args.seconds, "1")
        after = thread_times(gateway.process.pid)
    requests = max(cell["requests"], 1)
    print(f"{cell['rps']:.0f} req/s; CPU per request by thread (user + system):")
    for name, (user, system) in after.items():
        u = user - before.get(name, (0.0, 0.0))[0]
        s = system - before.get(name, (0.0, 0.0))[1]
        if u + s > 0:
            print(f"  {name:28s} {u / requests * 1e6:7.1f} + {s / requests * 1e6:6.1f} us")

if __name__ == "__main__":
    main()
