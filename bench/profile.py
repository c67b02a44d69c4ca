"""Where the gateway's CPU goes under load: py-spy samples one gateway process while wrk drives it.

Starts the stub and one gateway (pinned as in run.py), warms it up, then records the gateway with
py-spy for the length of one wrk run and prints the functions with the most samples, by self time
and by inclusive time, as percentages of all samples. The raw stacks go next to the report.

    pip install py-spy
    python bench/profile.py [--stream] [--seconds 10] [--concurrency 50] [--config-extra YAML] [--otlp]

`--otlp` exports traces and metrics to a loopback OTLP receiver, as telemetry_overhead.py's
"tracing+metrics" setting does. py-spy needs to attach to the process (root, or ptrace allowed).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import KEY, MESSAGES, MODEL, Target, free_port, gateway_config, pinned, run_wrk, stop, wait_http


def aggregate(raw: Path, top: int) -> str:
    """Top functions by self and inclusive samples from py-spy's collapsed-stack output."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = [f.split(" (", 1)[0] + " (" + f.split(" (", 1)[1].rsplit(":", 1)[0].rsplit("/", 2)[-1]
                  if " (" in f else f for f in stack.split(";")]
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"{total} samples"]
    for title, counter in (("self", own), ("inclusive", inclusive)):
        lines.append(f"\n-- top {top} by {title} --")
        for frame, count in counter.most_common(top):
            lines.append(f"{100 * count / max(total, 1):6.1f}%  {frame}")
    return "\n".join(lines)


def share(raw: Path, text: str) -> float:
    """The fraction of samples with any frame containing `text` (a module path, a function name)."""
    hit = total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if stack:
            total += int(count_text)
            hit += int(count_text) if text in stack else 0
    return hit / max(total, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--config-extra", default="")
    parser.add_argument("--otlp", action="store_true")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--share", action="append", default=[], metavar="TEXT",
                        help="also print the share of samples whose stack contains TEXT (repeatable)")
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    stub_port, receiver_port, port = free_port(), free_port(), free_port()
    processes = [subprocess.Popen(pinned([sys.executable, str(HERE / "stub.py"), "--port", str(stub_port)], "1"))]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    if args.otlp:
        processes.append(subprocess.Popen(pinned(
            [sys.executable, "-m", "gateway.testing.otlp_receiver", "--port", str(receiver_port)], "1")))
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{receiver_port}"
        wait_http(f"http://127.0.0.1:{receiver_port}/v1/traces", method="POST", data=b"")
    with tempfile.TemporaryDirectory(prefix="lockgate-profile-") as tmp:
        workdir = Path(tmp)
        body: dict[str, object] = {"model": MODEL, "messages": MESSAGES, "max_tokens": 64}
        if args.stream:
            body["stream"] = True
        body_path = workdir / "body.json"
        body_path.write_text(json.dumps(body))
        config = workdir / "config.yaml"
        config.write_text(gateway_config(stub_port, args.config_extra.replace("\\n", "\n")))
        try:
            gateway = subprocess.Popen(pinned(
                [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port),
                 "--log-level", "warning"], "0"), env=env, cwd=workdir)
            processes.append(gateway)
            wait_http(f"http://127.0.0.1:{port}/readyz")
            target = Target("gateway", f"http://127.0.0.1:{port}/v1", KEY)
            run_wrk(target, body_path, args.concurrency, 2, "1")  # warm-up
            raw = HERE / "results" / "profile.txt"
            raw.parent.mkdir(exist_ok=True)
            spy = subprocess.Popen([py_spy, "record", "--pid", str(gateway.pid), "--rate", str(args.rate),
                                    "--format", "raw", "--output", str(raw), "--nonblocking",
                                    "--duration", str(int(args.seconds))],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            cell = run_wrk(target, body_path, args.concurrency, args.seconds + 1, "1")
            spy.wait(timeout=60)
            print(f"{cell['rps']:.0f} req/s under py-spy; stacks in {raw}")
            print(aggregate(raw, args.top))
            for text in args.share:
                print(f"{100 * share(raw, text):6.1f}% of samples have a frame containing {text!r}")
        finally:
            for process in processes:
                stop(process)


if __name__ == "__main__":
    main()
