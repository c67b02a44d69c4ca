"""The SDK stands alone: a fresh venv holding only what `sdk/pyproject.toml` declares runs it.

Building a venv with pip from PyPI takes ~20 s here, so the venv is assembled from the
distributions already installed: the SDK's declared requirements, resolved transitively through
their own metadata (no extras), each copied file by file from its RECORD. Anything the SDK imports
but does not declare (the gateway's FastAPI, pydantic, orjson, aiohttp...) is simply absent there,
so a hidden dependency fails this test.
"""

from __future__ import annotations

import shutil
import subprocess
import textwrap
import tomllib
import uuid
import venv
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from gateway.testing.server import GatewayServer
from tests.sdk.conftest import AGENT_KEY

SDK_DIR = Path(__file__).resolve().parents[2] / "sdk"
GATEWAY_DEPS = {"fastapi", "starlette", "pydantic", "orjson", "aiohttp", "litellm", "uvicorn", "yaml", "typer", "gateway"}


def _name(requirement: str) -> str:
    return canonicalize_name(Requirement(requirement).name)


def _closure(requirements: list[str]) -> set[str]:
    """Distribution names needed by `requirements` on this interpreter, extras left out."""
    seen: set[str] = set()
    todo = list(requirements)
    while todo:
        requirement = Requirement(todo.pop())
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(requirement.name)
        if name not in seen:
            seen.add(name)
            todo.extend(metadata.distribution(name).requires or [])
    return seen


def test_sdk_declares_only_httpx_and_opentelemetry_api() -> None:
    project = tomllib.loads((SDK_DIR / "pyproject.toml").read_text())["project"]
    assert sorted(_name(r) for r in project["dependencies"]) == ["httpx", "opentelemetry-api"]


def test_sdk_runs_in_a_venv_with_only_its_declared_dependencies(tmp_path: Path, fake_gateway: GatewayServer) -> None:
    project = tomllib.loads((SDK_DIR / "pyproject.toml").read_text())["project"]
    env = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env)
    python = env / "bin" / "python"
    site = Path(subprocess.check_output([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())
    for name in sorted(_closure(project["dependencies"])):
        dist = metadata.distribution(name)
        for file in dist.files or []:
            source = Path(str(dist.locate_file(file)))
            if source.is_file() and not str(file).startswith(".."):
                (site / file).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, site / file)
    shutil.copytree(SDK_DIR / "lockgate_sdk", site / "lockgate_sdk")

    session_id = f"ses-{uuid.uuid4()}"
    script = textwrap.dedent(
        f"""
        import sys
        from lockgate_sdk import Gateway, StateConflict
        gateway = Gateway({fake_gateway.url!r}, {AGENT_KEY!r})
        with gateway.session(id={session_id!r}) as session:
            session.state["answer"] = 42
            session.tool(lambda: "ok")()
            print(session.state["answer"], [e["status"] for e in session.events()])
        leaked = sorted(m for m in {sorted(GATEWAY_DEPS)!r} if m in sys.modules)
        print("leaked", leaked)
        """
    )
    done = subprocess.run([python, "-I", "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["42 ['ok']", "leaked []"]
    # Nothing of the gateway's was installed, so nothing of it could have been imported.
    installed = {p.name.split("-")[0].lower() for p in site.iterdir() if p.name.endswith(".dist-info")}
    assert installed.isdisjoint(GATEWAY_DEPS | {"opentelemetry_sdk", "openai", "anthropic"})
    assert "opentelemetry_api" in installed and "httpx" in installed
