"""The filter tree (RFC 7644 §3.4.2.2): one frozen dataclass per kind of expression.

``str(node)`` renders filter text; for a tree from :func:`scim.filter.parser.parse_filter`,
parsing that text gives back an equal tree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from scim.paths import AttrPath

CompareValue = str | bool | int | float | None


@dataclass(frozen=True)
class Compare:
    """``path op value``; ``op`` is lowercase: eq ne co sw ew gt ge lt le."""

    path: AttrPath
    op: str
    value: CompareValue

    def __str__(self) -> str:
        return f"{self.path} {self.op} {render_value(self.value)}"


@dataclass(frozen=True)
class Present:
    """``path pr``: the attribute has a non-empty value."""

    path: AttrPath

    def __str__(self) -> str:
        return f"{self.path} pr"


@dataclass(frozen=True)
class And:
    """``left and right``."""

    left: Filter
    right: Filter

    def __str__(self) -> str:
        return _render_chain(self)


@dataclass(frozen=True)
class Or:
    """``left or right``."""

    left: Filter
    right: Filter

    def __str__(self) -> str:
        return _render_chain(self)


@dataclass(frozen=True)
class Not:
    """``not (expr)``."""

    expr: Filter

    def __str__(self) -> str:
        return f"not ({self.expr})"


@dataclass(frozen=True)
class ValuePathFilter:
    """``path[expr]``: some element of a multi-valued complex attribute matches ``expr``."""

    path: AttrPath
    expr: Filter

    def __str__(self) -> str:
        return f"{self.path}[{self.expr}]"


Filter = Compare | Present | And | Or | Not | ValuePathFilter


def render_value(value: CompareValue) -> str:
    """A compValue as filter text: a JSON string, number, true, false or null."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return repr(value)


def operands(node: And | Or) -> list[Filter]:
    """The operands of a chain of one connective (``a and b and c``), in order, iteratively."""
    found: list[Filter] = []
    stack: list[Filter] = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, And | Or) and type(current) is type(node):
            stack += [current.right, current.left]
        else:
            found.append(current)
    return found


def top_level_paths(node: Filter) -> list[AttrPath]:
    """The attribute paths the filter reads from the resource, in order, iteratively.

    Inside ``emails[type eq "work"]`` only ``emails`` counts: the bracket's paths are
    relative to its elements.
    """
    paths: list[AttrPath] = []
    stack: list[Filter] = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, And | Or):
            stack += [current.right, current.left]
        elif isinstance(current, Not):
            stack.append(current.expr)
        else:
            paths.append(current.path)
    return paths


def combine(connective: type[And] | type[Or], terms: list[Filter]) -> Filter:
    """Join ``terms`` with one connective into a balanced tree.

    ``and`` and ``or`` are associative, so the shape is free: a balanced tree keeps even a
    4,000-character chain a dozen levels deep, where a left-deep one would overflow the stack
    in ``==`` and ``hash``. Terms of the same connective are spliced in first, so the result
    depends only on the flat list, and rendering then parsing gives back an equal tree.
    """
    level: list[Filter] = []
    for term in terms:
        level += operands(term) if type(term) is connective else [term]
    while len(level) > 1:
        paired: list[Filter] = [
            connective(level[at], level[at + 1]) for at in range(0, len(level) - 1, 2)
        ]
        level = paired + level[len(level) - len(level) % 2 :]
    return level[0]


def _render_chain(node: And | Or) -> str:
    """Render an and/or chain flat, with parentheses around an ``or`` inside an ``and``.

    Precedence is not > and > or (RFC 7644 §3.4.2.2); the ``not`` operand is always grouped.
    """
    word = " and " if isinstance(node, And) else " or "
    return word.join(
        f"({term})" if isinstance(node, And) and isinstance(term, Or) else str(term)
        for term in operands(node)
    )
