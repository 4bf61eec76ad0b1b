"""Comparisons in SCIM filters (RFC 7644 §3.4.2.2), typed by the attribute's definition.

Strings fold with ``str.casefold`` unless caseExact, dateTimes compare chronologically,
numbers as numbers, booleans only with eq/ne (and Entra's "True"/"False" strings, Q2). Each
test is built once per comparison in a filter (:mod:`scim.filter.evaluate` compiles the tree),
then run on the values of many documents.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from scim.definitions import BINARY, BOOLEAN, COMPLEX, DATETIME, DECIMAL, INTEGER, AttributeDef
from scim.errors import InvalidFilter
from scim.filter.tree import Compare, CompareValue, render_value
from scim.paths import lookup

_EQUALITY: dict[str, Callable[[Any, Any], bool]] = {"eq": operator.eq, "ne": operator.ne}
_ORDERING: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}
_SUBSTRING: dict[str, Callable[[str, str], bool]] = {
    "co": operator.contains,  # expected in actual
    "sw": str.startswith,
    "ew": str.endswith,
}
_STRING_OPERATORS: dict[str, Callable] = {**_EQUALITY, **_ORDERING, **_SUBSTRING}

ValueTest = Callable[[list], bool]


def is_present(value: object) -> bool:
    """RFC 7644 §3.4.2.2 ``pr``: a value that is not null, "", [] or an all-empty object."""
    if isinstance(value, dict):
        return any(item not in (None, "", [], {}) for item in value.values())
    return value not in (None, "", [])


def comparison(node: Compare, definition: AttributeDef) -> ValueTest:
    """A test over the values at ``node.path``, typed by ``definition``.

    Multi-valued attributes match if any value matches (RFC 7644 §3.4.2.2). ``ne`` also
    matches when there is no value, since nothing is then equal to the operand; ``eq null``
    means "no value" and ``ne null`` "some value" (null is unassigned, RFC 7643 §2.5).

    :raises InvalidFilter: the operator or operand does not fit the attribute's type.
    """
    op, where = node.op, f"'{node.path} {node.op}'"
    if definition.type == COMPLEX:
        # `emails co "@x"` compares each element's "value" (RFC 7644 §3.4.2.2 Figure 2).
        value_definition = definition.sub_attribute("value")
        if value_definition is None or op in _ORDERING:
            names = ", ".join(f"'{node.path}.{sub.name}'" for sub in definition.sub_attributes[:2])
            raise InvalidFilter(
                f"filter: {where} compares the complex attribute '{node.path}'; "
                f"compare one of its sub-attributes instead, e.g. {names}"
            )
        inner = comparison(node, value_definition)
        return lambda values: inner(
            [
                value
                for element in values
                if isinstance(element, dict) and (value := lookup(element, "value")) is not None
            ]
        )
    if node.value is None:
        if op not in _EQUALITY:
            raise InvalidFilter(f"filter: {where} null: null compares with eq or ne only")
        wanted = op == "ne"
        return lambda values: any(is_present(value) for value in values) == wanted
    test = _value_test(op, node.value, definition, where)
    when_empty = op == "ne"

    def some_value(values: list) -> bool:
        # A loop, not any() over a generator: this runs for every term of every document.
        if not values:
            return when_empty
        for value in values:
            if test(value):
                return True
        return False

    return some_value


def _value_test(
    op: str, operand: CompareValue, definition: AttributeDef, where: str
) -> Callable[[object], bool]:
    """A test of one stored value against ``operand``, for the attribute's type."""
    kind = definition.type
    if kind == BOOLEAN:
        if op not in _EQUALITY:
            raise InvalidFilter(f"filter: {where}: a boolean compares with eq or ne only")
        expected = as_boolean(operand)
        if expected is None:
            raise InvalidFilter(f"filter: {where} {render_value(operand)}: expected true or false")
        same = _EQUALITY[op]
        return lambda value: (actual := as_boolean(value)) is not None and same(actual, expected)
    if kind in (INTEGER, DECIMAL):
        if op in _SUBSTRING or not _is_number(operand):
            raise InvalidFilter(f"filter: {where} {render_value(operand)}: expected a number")
        numeric = {**_EQUALITY, **_ORDERING}[op]
        return lambda value: _is_number(value) and numeric(value, operand)
    if kind == DATETIME and op not in _SUBSTRING:
        moment = _as_datetime(operand)
        if moment is None:
            raise InvalidFilter(
                f"filter: {where} {render_value(operand)}: expected an RFC 3339 dateTime "
                f'such as "2011-05-13T04:42:34Z"'
            )
        chronological = {**_EQUALITY, **_ORDERING}[op]
        return lambda value: (
            (actual := _as_datetime(value)) is not None and chronological(actual, moment)
        )
    if kind == BINARY and op in _ORDERING:
        raise InvalidFilter(f"filter: {where}: binary values cannot be ordered")
    # Strings and references; also dateTimes under co/sw/ew, compared as text (folded).
    # A number or boolean operand compares as its JSON text (a bare `employeeNumber eq 42`).
    text = operand if isinstance(operand, str) else render_value(operand)
    textual = _STRING_OPERATORS[op]
    if definition.case_exact and kind != DATETIME:
        return lambda value: isinstance(value, str) and textual(value, text)
    folded = text.casefold()
    return lambda value: isinstance(value, str) and textual(str.casefold(value), folded)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def as_boolean(value: object) -> bool | None:
    """A boolean, or the strings "true"/"false" in any case (Entra Q2, Q15); else None."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.casefold() in ("true", "false"):
        return value.casefold() == "true"
    return None


def _as_datetime(value: object) -> datetime | None:
    """An aware datetime from ISO 8601 text ("Z" or an offset; none means UTC), else None."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
