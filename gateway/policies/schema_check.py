"""Validates a reviewer's edited tool arguments against the tool's JSON schema (the one jsonschema user)."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator


def schema_problems(schema: dict[str, Any] | None, arguments: Any) -> list[str]:
    """Each way `arguments` breaks `schema`, as `path: message`; empty when they fit (or no schema)."""
    if not schema:
        return []
    # The schema is the agent's own: a broken one leaves nothing sound to check against. Broken shows
    # two ways: the schema itself is invalid (`{"properties": []}`, which the validator does not check
    # unless asked, then fails on), or it points where nothing is (`{"$ref": "#/nowhere"}`, found only
    # while validating). Both made the reviewer's edit a 500 (found by sending random edits).
    try:
        Draft202012Validator.check_schema(schema)
        errors = sorted(Draft202012Validator(schema).iter_errors(arguments), key=lambda e: list(e.absolute_path))
    except Exception:  # SchemaError, or whatever the validator raises over an unsound one (a $ref to nowhere)
        return []
    return [f"{'.'.join(str(p) for p in error.absolute_path) or '(arguments)'}: {error.message}" for error in errors]
