"""The `lockgate` command: serve, check, demo."""

from __future__ import annotations

import copy
import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from gateway.app import CONFIG_ENV
from gateway.cli_admin import audit_app, budgets_app, deployments, keys_app, spend_app
from gateway.cli_oversight import register as register_oversight
from gateway.config.loader import ConfigError, load_config
from gateway.store import store_problem

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Lockgate: an observability-first LLM gateway.")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(spend_app, name="spend")
app.add_typer(budgets_app, name="budgets")
app.command("deployments")(deployments)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
register_oversight(app)


def _run(config_path: Path, host: str | None, port: int | None, workers: int | None, log_level: str) -> None:
    import uvicorn

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        _print_problems(config_path, exc)
        raise typer.Exit(1) from None
    for warning in config.warnings:
        err.print(f"[yellow]warning[/] {warning}")
    problem = store_problem(config.store.url)
    if problem is not None:
        err.print(f"[red]error[/] {config_path}: 1 problem(s)")
        err.print(f"  store: {problem}", markup=False, highlight=False)
        raise typer.Exit(1)
    os.environ[CONFIG_ENV] = str(config_path.resolve())
    uvicorn.run(
        "gateway.app:create_app_from_env",
        factory=True,
        host=host or config.server.host,
        port=port if port is not None else config.server.port,
        workers=workers or config.server.workers,
        loop="uvloop",
        http="httptools",
        access_log=False,  # uvicorn's own: Lockgate's (server.access_log) carries the request and trace ids
        log_level=log_level,
        log_config=_log_config(log_level),
        timeout_graceful_shutdown=config.server.shutdown_grace,
    )


def _log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging, plus Lockgate's loggers (`lockgate`, `lockgate.access`) on stderr at `level`
    and OpenTelemetry's warnings.

    Given to uvicorn rather than set up here, so every worker process configures it the same way.
    """
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["lockgate"] = {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    config["handlers"]["lockgate"] = {
        "class": "logging.StreamHandler", "formatter": "lockgate", "stream": "ext://sys.stderr",
    }
    config["loggers"]["lockgate"] = {"handlers": ["lockgate"], "level": level.upper(), "propagate": False}
    # The OpenTelemetry SDK's warnings (an unreachable collector: one per retry), dated like ours and
    # each at most once per 10 s; unconfigured, they went bare to stderr through Python's last resort.
    config.setdefault("filters", {})["repeats"] = {"()": "gateway.log_throttle.ThrottleRepeats"}
    config["handlers"]["opentelemetry"] = {**config["handlers"]["lockgate"], "filters": ["repeats"]}
    config["loggers"]["opentelemetry"] = {"handlers": ["opentelemetry"], "level": "WARNING", "propagate": False}
    return config


@app.command()
def serve(
    config: Annotated[Path, typer.Option("--config", "-c", help="Path to lockgate.yaml.")] = Path("lockgate.yaml"),
    host: Annotated[str | None, typer.Option(help="Bind address (default: server.host, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: server.port, 4000).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: server.workers, 1).")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the gateway."""
    _run(config, host, port, workers, log_level)


@app.command()
def check(config: Annotated[Path, typer.Argument(help="The config file to validate.")]) -> None:
    """Validate a config file; print each problem with its key path."""
    try:
        loaded = load_config(config)
    except ConfigError as exc:
        _print_problems(config, exc)
        raise typer.Exit(1) from None
    for warning in loaded.warnings:
        out.print(f"[yellow]warning[/] {warning}", markup=True, highlight=False)
    deployments = sum(len(g.deployments) for g in loaded.groups.values())
    out.print(f"[green]ok[/] {config}: {len(loaded.groups)} model groups, {deployments} deployments")


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="Port to serve the demo on.")] = 4000,
) -> None:
    """Run the gateway with the built-in fake provider: no key, no network."""
    # The demo's state (budgets, holds) lives in a fresh temp directory, never in the caller's cwd.
    workdir = Path(tempfile.mkdtemp(prefix="lockgate-demo-"))
    path = workdir / "lockgate.yaml"
    template = resources.files("gateway.config").joinpath("demo.yaml").read_text(encoding="utf-8")
    path.write_text(template + f"\nstore: sqlite:///{workdir / 'lockgate.db'}\n", encoding="utf-8")
    base = f"http://127.0.0.1:{port}"
    out.print(DEMO_GUIDE.format(base=base, config=path), markup=False, highlight=False)
    _run(path, "127.0.0.1", port, 1, "info")


DEMO_GUIDE = """Lockgate demo on {base}: every model is the built-in fake provider (config: {config}).

Models: gpt-4o-mini, flaky-model (fails half its calls; the router moves on), down-model (falls
back to gpt-4o-mini), slow-model (streams slowly), text-embedding-3-small.

1. A call that falls back (see x-lockgate-deployment and x-lockgate-attempts):
  curl -si {base}/v1/chat/completions -H 'Authorization: Bearer lockgate-demo-key' \\
    -H 'Content-Type: application/json' \\
    -d '{{"model": "down-model", "messages": [{{"role": "user", "content": "hello"}}]}}'

2. PII never reaches the model (the fake model repeats what it received):
  curl -s {base}/v1/chat/completions -H 'Authorization: Bearer lockgate-demo-key' \\
    -d '{{"model": "gpt-4o-mini", "messages": [{{"role": "user", "content": "mail me at jane@example.com"}}]}}'

3. A budget: the key 'capped' may spend one fake cent; this loop ends in 429 budget_exceeded:
  for i in $(seq 40); do curl -s -o /dev/null -w '%{{http_code}} ' {base}/v1/chat/completions \\
    -H 'Authorization: Bearer lockgate-capped-key' \\
    -d '{{"model": "gpt-4o-mini", "messages": [{{"role": "user", "content": "hi"}}]}}'; done

4. A tool call held for a human: this waits until you decide in another terminal.
python - <<'PY'
from openai import OpenAI
client = OpenAI(base_url="{base}/v1", api_key="lockgate-demo-key")
tool = {{"type": "function", "function": {{"name": "send_payment", "parameters": {{"type": "object",
        "properties": {{"to": {{"type": "string"}}, "amount": {{"type": "number"}}}}, "required": ["to", "amount"]}}}}}}
reply = client.chat.completions.create(model="gpt-4o-mini", tools=[tool],
        messages=[{{"role": "user", "content": "pay Bob"}}], extra_headers={{"x-lockgate-session-id": "demo-2"}})
print(reply.choices[0].message)
PY
  Then: lockgate approvals list --master-key lockgate-demo-key --url {base}
        lockgate approvals approve <id> --master-key lockgate-demo-key --url {base}   (or deny <id> --reason "...")
  Or open {base}/ui in a browser, sign in with lockgate-demo-key, and decide there.

5. Traces: start the demo with OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 to send one trace
   per request to a collector or Jaeger (deploy/docker-compose.yml runs both). Metrics: {base}/metrics

6. Agents written for Anthropic's API or OpenAI's Responses API (the OpenAI Agents SDK's default) use
   the same routes, budgets and policies:
  curl -s {base}/v1/messages -H 'x-api-key: lockgate-demo-key' \\
    -d '{{"model": "down-model", "max_tokens": 100, "messages": [{{"role": "user", "content": "hello"}}]}}'
  curl -s {base}/v1/responses -H 'Authorization: Bearer lockgate-demo-key' \\
    -d '{{"model": "down-model", "input": "hello"}}'
"""


def _print_problems(path: Path, exc: ConfigError) -> None:
    err.print(f"[red]error[/] {path}: {len(exc.problems)} problem(s)")
    for problem in exc.problems:
        err.print(f"  {problem}", markup=False, highlight=False)


def main() -> None:
    app()
