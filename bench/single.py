"""One warmed-up gateway under wrk, for the attribution tools (profile.py, thread_cpu.py).

Starts the stub (and, with `otlp`, the loopback OTLP receiver, exporting traces and metrics to it)
on CPU 1 and one gateway on CPU 0 with the given config sections, warms it up with two seconds of
load, and yields what a tool needs to drive and observe it. Everything is stopped afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import KEY, MESSAGES, MODEL, Target, free_port, gateway_config, pinned, run_wrk, stop, wait_http


@dataclass(frozen=True)
class Loaded:
    process: subprocess.Popen[bytes]
    target: Target
    body: Path


@contextmanager
def loaded_gateway(config_extra: str, otlp: bool, stream: bool, concurrency: int) -> Iterator[Loaded]:
    stub, receiver, port = free_port(), free_port(), free_port()
    processes = [subprocess.Popen(pinned([sys.executable, str(HERE / "stub.py"), "--port", str(stub)], "1"))]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    try:
        if otlp:
            processes.append(subprocess.Popen(pinned(
                [sys.executable, "-m", "gateway.testing.otlp_receiver", "--port", str(receiver)], "1")))
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{receiver}"
            wait_http(f"http://127.0.0.1:{receiver}/v1/traces", method="POST", data=b"")
        with tempfile.TemporaryDirectory(prefix="lockgate-bench-") as tmp:
            body: dict[str, object] = {"model": MODEL, "messages": MESSAGES, "max_tokens": 64}
            if stream:
                body["stream"] = True
            body_path = Path(tmp) / "body.json"
            body_path.write_text(json.dumps(body))
            config = Path(tmp) / "config.yaml"
            config.write_text(gateway_config(stub, config_extra.replace("\\n", "\n")))
            gateway = subprocess.Popen(pinned(
                [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port),
                 "--log-level", "warning"], "0"), env=env, cwd=tmp)
            processes.append(gateway)
            wait_http(f"http://127.0.0.1:{port}/readyz")
            target = Target("gateway", f"http://127.0.0.1:{port}/v1", KEY)
            run_wrk(target, body_path, concurrency, 2, "1")  # warm-up
            yield Loaded(gateway, target, body_path)
    finally:
        for process in processes:
            stop(process)
