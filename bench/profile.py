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
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import run_wrk
from single import loaded_gateway


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
    with loaded_gateway(args.config_extra, args.otlp, args.stream, args.concurrency) as gateway:
        raw = HERE / "results" / "profile.txt"
        raw.parent.mkdir(exist_ok=True)
        spy = subprocess.Popen([py_spy, "record", "--pid", str(gateway.process.pid), "--rate", str(args.rate),
                                "--format", "raw", "--output", str(raw), "--nonblocking", "--threads",
                                "--duration", str(int(args.seconds))],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cell = run_wrk(gateway.target, gateway.body, args.concurrency, args.seconds + 1, "1")
        spy.wait(timeout=60)
    print(f"{cell['rps']:.0f} req/s under py-spy; stacks in {raw}")
    print(aggregate(raw, args.top))
    for text in args.share:
        print(f"{100 * share(raw, text):6.1f}% of samples have a frame containing {text!r}")

if __name__ == "__main__":
    main()
