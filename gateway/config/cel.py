"""CEL conditions for policy rules: the one module that imports `cel_expr_python`.

Expressions are compiled once, when the config loads (a bad one is a config error naming its key
path), and evaluated on the hot path in microseconds. The variables an expression may use are fixed
here, so a typo in a variable name fails at load time rather than on a request:

- `request`  the request body (map): `request.max_tokens`, `request.messages`, `request.tools`
- `model`    the model group the client asked for (string)
- `key`      the caller: `key.name`, `key.team`, `key.user`
- `team`, `user`  shorthands for the caller's team and user ("" when unknown)
- `session`  `session.id` ("" when the client sent no `x-lockgate-session-id`)
- `tool`     in `tool_call` rules: `tool.name` and `tool.args` (the parsed arguments)
- `response` in `post_call` rules: `response.content`, `response.finish_reason`, `response.tool_names`
- `phase`    the phase being evaluated (string)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cel_expr_python import cel
from cel_expr_python.ext import ext_strings

_MAP = cel.Type.Map(cel.Type.STRING, cel.Type.DYN)
VARIABLES: dict[str, Any] = {
    "request": _MAP,
    "model": cel.Type.STRING,
    "key": _MAP,
    "team": cel.Type.STRING,
    "user": cel.Type.STRING,
    "session": _MAP,
    "tool": _MAP,
    "response": _MAP,
    "phase": cel.Type.STRING,
}


class CelCompileError(ValueError):
    """An expression that does not parse, names an unknown variable, or is not a condition."""


class Condition:
    """A compiled CEL expression that yields true or false."""

    __slots__ = ("_expression", "source")

    def __init__(self, source: str, expression: Any) -> None:
        self.source = source
        self._expression = expression

    def holds(self, activation: Any) -> bool | None:
        """True or false; None when evaluation failed (a missing field, a type mismatch)."""
        value = self._expression.eval(activation)
        if value.type() == cel.Type.ERROR:
            return None
        result = value.value()
        return result if isinstance(result, bool) else None


class CelEnvironment:
    """The declared variables and extensions; builds conditions and per-request activations."""

    def __init__(self) -> None:
        self._env = cel.NewEnv(variables=VARIABLES, extensions=[ext_strings.ExtStrings()])

    def compile(self, source: str) -> Condition:
        try:
            expression = self._env.compile(source)
        except RuntimeError as exc:
            # The library's message carries the position and a caret line; keep its first line.
            text = str(exc).removeprefix("INVALID_ARGUMENT: ").replace("ERROR: <input>:", "at ")
            raise CelCompileError(" ".join(text.split("\n")[0:1]).strip()) from None
        kind = expression.return_type()
        if kind != cel.Type.BOOL and kind != cel.Type.DYN:
            raise CelCompileError(f"the expression must be a condition (true/false), not {kind.name()}")
        return Condition(source, expression)

    def activation(self, data: Mapping[str, Any]) -> Any:
        """Bindings shared by every rule evaluated for one request and phase."""
        return self._env.Activation(data)
