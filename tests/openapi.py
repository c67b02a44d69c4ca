"""Validates JSON against OpenAI's own OpenAPI spec (`../shared/specs/openai-openapi.yaml`)."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_URI = "urn:openai-openapi"


def spec_path() -> Path:
    here = Path(__file__).resolve().parent
    candidates = [Path(os.environ["OPENAI_SPEC"])] if "OPENAI_SPEC" in os.environ else []
    candidates += [here.parent.parent / "shared" / "specs" / "openai-openapi.yaml"]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise FileNotFoundError("openai-openapi.yaml not found; set OPENAI_SPEC to its path")


@functools.cache
def _registry() -> Registry:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with spec_path().open() as handle:
        spec = _nullable_to_31(yaml.load(handle, Loader=loader))
    return Registry().with_resource(SPEC_URI, Resource.from_contents(spec, default_specification=DRAFT202012))


def _nullable_to_31(node: Any) -> Any:
    """The spec says 3.1 but still marks nulls the 3.0 way (`nullable: true`); make them 3.1 types."""
    if isinstance(node, list):
        return [_nullable_to_31(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _nullable_to_31(value) for key, value in node.items()}
    if node.pop("nullable", False):
        kind = node.get("type")
        if isinstance(kind, str):
            node["type"] = [kind, "null"]
        elif isinstance(kind, list) and "null" not in kind:
            node["type"] = [*kind, "null"]
        if isinstance(node.get("enum"), list) and None not in node["enum"]:
            node["enum"] = [*node["enum"], None]
        if "$ref" in node or "allOf" in node or "oneOf" in node or "anyOf" in node:
            node = {"anyOf": [node, {"type": "null"}]}
    return node


@functools.cache
def _validator(schema_name: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"{SPEC_URI}#/components/schemas/{schema_name}"}, registry=_registry())


def assert_matches(schema_name: str, instance: Any) -> None:
    """Fail with every violation listed if `instance` does not match the named spec schema."""
    errors = sorted(_validator(schema_name).iter_errors(instance), key=lambda e: list(e.path))
    assert not errors, f"{schema_name} violations:\n" + "\n".join(
        f"  at {'/'.join(map(str, e.path)) or '<root>'}: {e.message[:300]}" for e in errors
    )
