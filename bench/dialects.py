"""What answering in another API's shape costs: `/v1/messages` and `/v1/responses` against chat completions.

One gateway (the default config: metrics on, one OpenAI-compatible deployment on `bench/stub.py`),
pinned as in run.py. The same question is asked in each API's shape, JSON and streamed, in
interleaved rounds: the gateway's requests/s and CPU per request for each endpoint, as ratios to
`/v1/chat/completions` measured in the same rounds (paired medians: the machine drifts between rounds).
The difference is the translation: the request read into a chat body and encoded again, the answer
parsed and rendered in the endpoint's shape (for streams, event by event).

    python bench/dialects.py [--seconds 2] [--rounds 4] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

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

SYSTEM, QUESTION = MESSAGES[0]["content"], MESSAGES[1]["content"]
# endpoint: (path under /v1, its request for the same question)
ENDPOINTS: dict[str, tuple[str, dict[str, Any]]] = {
    "chat": ("/chat/completions", {"model": MODEL, "messages": MESSAGES, "max_tokens": 64}),
    "messages": ("/messages", {"model": MODEL, "system": SYSTEM, "max_tokens": 64,
                               "messages": [{"role": "user", "content": QUESTION}]}),
    "responses": ("/responses", {"model": MODEL, "instructions": SYSTEM, "input": QUESTION,
                                 "max_output_tokens": 64}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--gateway-cpus", default="0")
    parser.add_argument("--load-cpus", default="1")
    args = parser.parse_args()

    stub_port, port = free_port(), free_port()
    stub = subprocess.Popen(pinned([sys.executable, str(HERE / "stub.py"), "--port", str(stub_port)], args.load_cpus))
    gateway = None
    with tempfile.TemporaryDirectory(prefix="lockgate-dialects-bench-") as tmp:
        workdir = Path(tmp)
        config = workdir / "lockgate.yaml"
        config.write_text(gateway_config(stub_port))
        try:
            wait_http(f"http://127.0.0.1:{stub_port}/v1/chat/completions", method="POST", data=b'{"model":"x"}')
            gateway = subprocess.Popen(pinned(
                [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port),
                 "--log-level", "warning"], args.gateway_cpus,
            ))
            wait_http(f"http://127.0.0.1:{port}/readyz")
            target = Target("gateway", f"http://127.0.0.1:{port}/v1", KEY)
            for kind in ("json", "stream"):
                bodies = {}
                for name, (_, body) in ENDPOINTS.items():
                    bodies[name] = workdir / f"{name}-{kind}.json"
                    bodies[name].write_text(json.dumps({**body, "stream": kind == "stream"}))
                rates: dict[str, list[float]] = {name: [] for name in ENDPOINTS}
                cpu: dict[str, list[float]] = {name: [] for name in ENDPOINTS}
                for name, (path, _) in ENDPOINTS.items():  # warm-up
                    run_wrk(target, bodies[name], args.concurrency, 1, args.load_cpus, path)
                for _ in range(args.rounds):
                    for name, (path, _) in ENDPOINTS.items():
                        before = cpu_seconds(gateway.pid)
                        cell = run_wrk(target, bodies[name], args.concurrency, args.seconds, args.load_cpus, path)
                        if cell["errors"]:
                            raise SystemExit(f"{name} ({kind}): {cell['errors']} errors from wrk (non-2xx answers?)")
                        rates[name].append(cell["rps"])
                        cpu[name].append((cpu_seconds(gateway.pid) - before) / max(cell["requests"], 1))
                print(f"\n{kind}, concurrency {args.concurrency}, {args.rounds} x {args.seconds:g} s per endpoint:")
                for name in ENDPOINTS:
                    ratio = statistics.median(r / b for r, b in zip(rates[name], rates["chat"], strict=True))
                    over = statistics.median(c - b for c, b in zip(cpu[name], cpu["chat"], strict=True))
                    print(f"  {name:10s} {statistics.mean(rates[name]):7.0f} req/s (x{ratio:5.3f} of chat)   "
                          f"gateway CPU {statistics.mean(cpu[name]) * 1e6:5.0f} us/req ({over * 1e6:+4.0f} us)",
                          flush=True)
        finally:
            if gateway is not None:
                stop(gateway)
            stop(stub)


if __name__ == "__main__":
    main()
