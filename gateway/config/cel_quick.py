"""A pure-Python evaluator for the simplest CEL conditions, answering only when it is sure.

Measured in a gateway under load, one CEL evaluation cost ~15 us and binding an activation ~17 us
(the library's code is cold by the time a request reaches it), for conditions like
`team == 'interns' && request.temperature > 1.0`. This module compiles conditions written in a
small subset of CEL into Python closures:

    or := and ('||' and)*     and := cmp ('&&' cmp)*     cmp := neg [('==' | '!=' | '<' | '<=' | '>' | '>=') neg]
    neg := ['!'] primary      primary := '(' or ')' | operand
    operand := literal | 'size' '(' path ')' | path ['.' ('contains' | 'startsWith' | 'endsWith') '(' string ')']
    path := variable ('.' field)*       literal := 'string' | "string" (no escapes) | int | float | true | false

A compiled condition returns True or False only where CEL's answer is certain (same types, fields
present, numbers within range); anything else (a missing field, a type CEL would refuse, a list
compared, an int beyond 2^53 next to a double) returns None, and the caller evaluates the real CEL
expression, which then gives the answer or the error. `tests/config/test_cel_quick.py` checks the
two against each other. A condition outside the subset is not compiled (`compile_quick` -> None).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

# A compiled node: the value, or `_UNSURE` when CEL's answer is not known here.
Node = Callable[[Mapping[str, Any]], Any]
Quick = Callable[[Mapping[str, Any]], "bool | None"]
_UNSURE = object()
_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?![\w.]))|(?P<str>'[^'\\\n]*'|\"[^\"\\\n]*\")"
    r"|(?P<name>[A-Za-z_]\w*)|(?P<op>&&|\|\||==|!=|<=|>=|[<>!().,-]))"
)
_COMPARE = {"==", "!=", "<", "<=", ">", ">="}
_STRING_METHODS = {"contains": str.__contains__, "startsWith": str.startswith, "endsWith": str.endswith}
_INT64 = 2**63
_EXACT = 2**53  # ints beyond this next to a double: leave the rounding rules to CEL


class _Unsupported(Exception):
    pass


def compile_quick(source: str, variables: frozenset[str]) -> Quick | None:
    """The condition as a Python closure, or None when it is outside the subset."""
    tokens: list[tuple[str, str]] = []
    position = 0
    source = source.strip()
    while position < len(source):
        match = _TOKEN.match(source, position)
        if match is None or match.end() == position:
            return None
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind)))
        position = match.end()
    try:
        parser = _Parser(tokens, variables)
        node = parser.disjunction()
        if parser.index != len(tokens):
            return None
    except _Unsupported:
        return None

    def quick(data: Mapping[str, Any]) -> bool | None:
        value = node(data)
        return value if value is True or value is False else None

    return quick


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], variables: frozenset[str]) -> None:
        self.tokens = tokens
        self.index = 0
        self.variables = variables

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.index] if self.index < len(self.tokens) else ("end", "")

    def take(self, text: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token[0] == "end" or (text is not None and token[1] != text):
            raise _Unsupported
        self.index += 1
        return token

    def disjunction(self) -> Node:
        node = self.conjunction()
        while self.peek() == ("op", "||"):
            self.take()
            node = _or(node, self.conjunction())
        return node

    def conjunction(self) -> Node:
        node = self.unary()
        while self.peek() == ("op", "&&"):
            self.take()
            node = _and(node, self.unary())
        return node

    def unary(self) -> Node:
        # CEL binds `!` tighter than a comparison: `!a == b` is `(!a) == b`.
        node = self.negation()
        kind, text = self.peek()
        if kind == "op" and text in _COMPARE:
            self.take()
            return _compare(text, node, self.negation())
        return node

    def negation(self) -> Node:
        if self.peek() == ("op", "!"):
            self.take()
            return _not(self.primary())
        return self.primary()

    def primary(self) -> Node:
        if self.peek() == ("op", "("):
            self.take()
            node = self.disjunction()
            self.take(")")
            return node
        return self.operand()

    def operand(self) -> Node:
        kind, text = self.take()
        if kind == "op" and text == "-":
            kind, text = self.take()
            if kind != "num":
                raise _Unsupported
            text = "-" + text
        if kind == "num":
            if len(text.lstrip("-")) > 1 and text.lstrip("-")[0] == "0" and text.lstrip("-")[1].isdigit():
                raise _Unsupported  # leading zeros: not worth guessing how CEL reads them
            value: Any = float(text) if any(c in text for c in ".eE") else int(text)
            if isinstance(value, int) and not -_INT64 <= value < _INT64:
                raise _Unsupported
            return lambda data: value
        if kind == "str":
            literal = text[1:-1]
            return lambda data: literal
        if kind != "name":
            raise _Unsupported
        if text in ("true", "false"):
            flag = text == "true"
            return lambda data: flag
        if text == "size" and self.peek() == ("op", "("):
            self.take()
            path = self.path(self.take()[1])
            self.take(")")
            return _size(path)
        path = self.path(text)
        if self.peek() == ("op", ".") and self.index + 1 < len(self.tokens):
            method = self.tokens[self.index + 1][1]
            if method in _STRING_METHODS:
                self.take()
                self.take()
                self.take("(")
                kind, argument = self.take()
                if kind != "str":
                    raise _Unsupported
                self.take(")")
                return _string_method(path, method, argument[1:-1])
        return path

    def path(self, root: str) -> Node:
        if root not in self.variables:
            raise _Unsupported
        fields: list[str] = []
        while self.peek() == ("op", ".") and self.index + 1 < len(self.tokens):
            kind, name = self.tokens[self.index + 1]
            if kind != "name" or name in _STRING_METHODS:
                break
            if self.index + 2 < len(self.tokens) and self.tokens[self.index + 2] == ("op", "("):
                raise _Unsupported  # a method or macro on the value: left to CEL
            self.index += 2
            fields.append(name)
        steps = tuple(fields)

        def walk(data: Mapping[str, Any]) -> Any:
            value = data.get(root, _UNSURE)
            for step in steps:
                if type(value) is not dict or step not in value:
                    return _UNSURE
                value = value[step]
            return value

        return walk


def _kind(value: Any) -> str:
    """The CEL kinds this module reasons about; anything else is unsure."""
    if value is True or value is False:
        return "bool"
    if type(value) is int:
        return "num" if -_INT64 <= value < _INT64 else "?"
    if type(value) is float:
        return "num"
    if type(value) is str:
        return "str"
    return "?"


def _compare(op: str, left: Node, right: Node) -> Node:
    def compare(data: Mapping[str, Any]) -> Any:
        a, b = left(data), right(data)
        kind_a, kind_b = _kind(a), _kind(b)
        if kind_a == "?" or kind_b == "?":
            return _UNSURE
        if kind_a == kind_b == "num" and type(a) is not type(b) and max(abs(a), abs(b)) > _EXACT:
            return _UNSURE
        if op == "==":
            return kind_a == kind_b and a == b  # CEL: values of different types are not equal
        if op == "!=":
            return kind_a != kind_b or a != b
        if kind_a != kind_b or kind_a == "bool" or (kind_a == "str" and not (a.isascii() and b.isascii())):
            return _UNSURE  # CEL refuses to order mixed types and booleans
        if op == "<":
            return a < b
        if op == "<=":
            return a <= b
        if op == ">":
            return a > b
        return a >= b

    return compare


def _size(path: Node) -> Node:
    def size(data: Mapping[str, Any]) -> Any:
        value = path(data)
        if type(value) in (str, list, dict):
            return len(value)
        return _UNSURE

    return size


def _string_method(path: Node, method: str, argument: str) -> Node:
    function = _STRING_METHODS[method]

    def call(data: Mapping[str, Any]) -> Any:
        value = path(data)
        return function(value, argument) if type(value) is str else _UNSURE

    return call


def _and(left: Node, right: Node) -> Node:
    def both(data: Mapping[str, Any]) -> Any:
        a = left(data)
        if a is False:
            return False  # CEL too: false && anything, even an error, is false
        if a is not True:
            return _UNSURE
        b = right(data)
        return b if b is True or b is False else _UNSURE

    return both


def _or(left: Node, right: Node) -> Node:
    def either(data: Mapping[str, Any]) -> Any:
        a = left(data)
        if a is True:
            return True  # CEL too: true || anything, even an error, is true
        if a is not False:
            return _UNSURE
        b = right(data)
        return b if b is True or b is False else _UNSURE

    return either


def _not(operand: Node) -> Node:
    def negate(data: Mapping[str, Any]) -> Any:
        value = operand(data)
        return (not value) if value is True or value is False else _UNSURE

    return negate
