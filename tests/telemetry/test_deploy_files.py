"""The deployment files, checked by parsing them (docker cannot run here): wired together consistently."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from gateway.config import parse_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def test_compose_runs_gateway_redis_collector_jaeger_v2_and_prometheus() -> None:
    services = load(DEPLOY / "docker-compose.yml")["services"]
    assert set(services) == {"gateway", "redis", "otel-collector", "jaeger", "prometheus"}
    jaeger = services["jaeger"]
    assert re.search(r"jaegertracing/jaeger:2\.\d+\.\d+$", jaeger["image"]), "Jaeger v2, pinned"
    assert "16686:16686" in jaeger["ports"]
    for name, service in services.items():
        assert "build" in service or re.search(r":[\w.-]+$", service["image"]), f"{name} image is pinned"
        for mount in service.get("volumes", ()):
            source = mount.split(":")[0]
            if not source.startswith((".", "/")):  # a named volume, declared at the top level
                assert source in load(DEPLOY / "docker-compose.yml")["volumes"], f"{name}: {source} undeclared"
                continue
            assert (DEPLOY / source).resolve().exists(), f"{name} mounts {source}, which is missing"


def test_the_gateway_keeps_its_state_in_the_stacks_redis_which_keeps_it_on_disk() -> None:
    services = load(DEPLOY / "docker-compose.yml")["services"]
    environ = services["gateway"]["environment"]
    config = parse_config((DEPLOY / "lockgate.yaml").read_text(), environ=environ)
    store = urlsplit(config.store.url)
    assert store.scheme == "redis" and store.hostname == "redis" and store.port == 6379
    redis = services["redis"]
    assert "--appendonly" in redis["command"] and redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert any(mount.endswith(":/data") for mount in redis["volumes"]), "Redis writes to a volume"


def test_the_images_default_store_is_in_a_directory_its_user_may_write() -> None:
    # /app (the working directory) is root's: a SQLite file there could not be opened by the
    # gateway's user, which served with every budget, hold and audit write failing.
    lines = [line.strip() for line in (DEPLOY / "Dockerfile").read_text().splitlines()]
    runtime = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM")):]
    user = next(line.split()[1] for line in runtime if line.startswith("USER"))
    default = next(line.split("=", 1)[1] for line in runtime if line.startswith("ENV LOCKGATE_STORE_URL="))
    config = parse_config((DEPLOY / "lockgate.yaml").read_text(),
                          environ={"LOCKGATE_MASTER_KEY": "k" * 16, "LOCKGATE_STORE_URL": default})
    directory = str(Path(config.store.url.removeprefix("sqlite:///")).parent)
    assert any(f"mkdir {directory}" in line and f"chown {user} {directory}" in line for line in runtime)
    assert f"VOLUME {directory}" in runtime


def test_gateway_exports_to_the_collectors_otlp_http_receiver() -> None:
    services = load(DEPLOY / "docker-compose.yml")["services"]
    env = services["gateway"]["environment"]
    endpoint = urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert endpoint.hostname == "otel-collector" and env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    collector = load(ROOT / "otel-collector.yaml")
    protocols = collector["receivers"]["otlp"]["protocols"]
    assert protocols["http"]["endpoint"] == f"0.0.0.0:{endpoint.port}" == "0.0.0.0:4318"
    assert protocols["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert services["gateway"]["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}


def test_collector_pipelines_send_traces_to_jaeger_and_metrics_to_prometheus() -> None:
    collector = load(ROOT / "otel-collector.yaml")
    pipelines = collector["service"]["pipelines"]
    for pipeline in pipelines.values():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline[kind]:
                assert component in collector[kind], f"{component} is used but not defined"
    assert "batch" in pipelines["traces"]["processors"]
    (traces_out,) = pipelines["traces"]["exporters"]
    # `otlp_grpc`: the exporter's name since collector v0.144.0 (`otlp`, the old one, is deprecated).
    assert traces_out.split("/")[0] == "otlp_grpc" and collector["exporters"][traces_out]["endpoint"] == "jaeger:4317"
    assert pipelines["metrics"]["exporters"] == ["prometheus"]
    scrape_port = collector["exporters"]["prometheus"]["endpoint"].rsplit(":", 1)[1]
    compose = load(DEPLOY / "docker-compose.yml")["services"]
    assert "contrib" in compose["otel-collector"]["image"]  # the prometheus exporter lives in contrib
    for extension in collector["service"].get("extensions", ()):
        assert extension in collector["extensions"]

    targets = {
        job["job_name"]: job["static_configs"][0]["targets"][0]
        for job in load(DEPLOY / "prometheus.yml")["scrape_configs"]
    }
    assert targets["otel-collector"] == f"otel-collector:{scrape_port}"
    host, port = targets["lockgate"].split(":")
    assert host in compose and f"{port}:{port}" in compose["gateway"]["ports"]


def test_dockerfile_builds_the_package_and_serves_the_bundled_config() -> None:
    lines = [line.strip() for line in (DEPLOY / "Dockerfile").read_text().splitlines()]
    for line in lines:
        if line.startswith("COPY") and "--from" not in line:
            for source in shlex.split(line)[1:-1]:
                assert (ROOT / source).exists(), f"Dockerfile copies {source}, which is missing"
    entry = next(line for line in lines if line.startswith("ENTRYPOINT"))
    assert '"lockgate", "serve"' in entry and '"0.0.0.0"' in entry
    assert "lockgate" in (ROOT / "pyproject.toml").read_text().split("[project.scripts]")[1]
    assert "EXPOSE 4000" in lines


def test_the_bundled_config_is_valid() -> None:
    config = parse_config((DEPLOY / "lockgate.yaml").read_text(),
                          environ={"LOCKGATE_MASTER_KEY": "k" * 16, "LOCKGATE_STORE_URL": "sqlite:////data/x.db"})
    assert "gpt-4o-mini" in config.groups and config.telemetry.service_name == "lockgate"
