"""Validates a reviewer's edited tool arguments against the tool's JSON schema (the one jsonschema user)."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError


def schema_problems(schema: dict[str, Any] | None, arguments: Any) -> list[str]:
    """Each way `arguments` breaks `schema`, as `path: message`; empty when they fit (or no schema)."""
    if not schema:
        return []
    try:
        validator = Draft202012Validator(schema)
    except SchemaError:
        return []  # the agent's own schema is broken: nothing sound to check against
    problems = []
    for error in sorted(validator.iter_errors(arguments), key=lambda e: list(e.absolute_path)):
        path = ".".join(str(p) for p in error.absolute_path) or "(arguments)"
        problems.append(f"{path}: {error.message}")
    return problems
