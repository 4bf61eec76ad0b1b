"""Evaluating SCIM filters (RFC 7644 §3.4.2.2) against documents.

Test documents with :func:`matches` (or a :func:`matcher` built once) a tree from
:func:`scim.filter.parser.parse_filter`. Attribute paths are
resolved by :mod:`scim.paths`; a path naming no attribute matches nothing and is not an error.
Comparisons follow the attribute's definition: strings fold with ``str.casefold`` unless
caseExact, dateTimes compare chronologically, booleans only with eq/ne.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from scim.definitions import (
    BINARY,
    BOOLEAN,
    COMPLEX,
    DATETIME,
    DECIMAL,
    INTEGER,
    NEVER,
    STRING,
    AttributeDef,
    ResourceTypeDef,
)
from scim.errors import InvalidFilter
from scim.filter.tree import (
    And,
    Compare,
    CompareValue,
    Filter,
    Not,
    Or,
    Present,
    ValuePathFilter,
    operands,
    render_value,
)
from scim.paths import AttrPath, Resolved, get_values, lookup, resolve

# The top-level single-valued strings the service can look up by index (entra-provisioning.md
# A1, A2, A10: Entra matches on userName, externalId, group displayName; GET by id).
INDEXABLE_ATTRIBUTES = frozenset({"id", "externalId", "userName", "displayName"})

_EQUALITY: dict[str, Callable[[Any, Any], bool]] = {"eq": operator.eq, "ne": operator.ne}
_ORDERING: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}
_SUBSTRING: dict[str, Callable[[str, str], bool]] = {
    "co": lambda actual, expected: expected in actual,
    "sw": str.startswith,
    "ew": str.endswith,
}
_STRING_OPERATORS: dict[str, Callable] = {**_EQUALITY, **_ORDERING, **_SUBSTRING}

ValueTest = Callable[[list], bool]


class _Scope(Protocol):
    """Where paths are resolved: a whole document, or one element inside ``attr[...]``."""

    def definition(self, path: AttrPath) -> AttributeDef | None: ...  # None: names nothing
    def never_returned(self, path: AttrPath) -> bool: ...  # returned "never" (RFC 7643 §7)
    def values(self, path: AttrPath) -> list: ...  # flattened, nulls left out
    def value_path_attribute(self, path: AttrPath) -> AttributeDef | None: ...  # for path[...]
    def elements(self, path: AttrPath) -> list: ...  # the element dicts of that attribute


class _DocumentScope:
    """Paths relative to a resource document (RFC 7644 §3.4.2.2)."""

    def __init__(self, document: dict, resource: ResourceTypeDef) -> None:
        self.document = document
        self.resource = resource
        self._resolved: dict[AttrPath, Resolved | None] = {}

    def resolve(self, path: AttrPath) -> Resolved | None:
        if path not in self._resolved:
            self._resolved[path] = resolve(path, self.resource)
        return self._resolved[path]

    def definition(self, path: AttrPath) -> AttributeDef | None:
        resolved = self.resolve(path)
        return None if resolved is None else resolved.definition

    def never_returned(self, path: AttrPath) -> bool:
        resolved = self.resolve(path)
        return resolved is not None and resolved.never_returned

    def values(self, path: AttrPath) -> list:
        resolved = self.resolve(path)
        return [] if resolved is None else get_values(self.document, resolved)

    def value_path_attribute(self, path: AttrPath) -> AttributeDef | None:
        resolved = self.resolve(path)
        if resolved is None:
            return None
        if resolved.definition.type != COMPLEX:
            raise InvalidFilter(
                f"filter: '{path}[...]' needs a complex attribute such as emails or members"
            )
        return resolved.definition

    def elements(self, path: AttrPath) -> list:
        return [element for element in self.values(path) if isinstance(element, dict)]


class _ElementScope:
    """Paths relative to one element of a multi-valued complex attribute (``type``, ``value``)."""

    def __init__(self, element: dict, attribute: AttributeDef) -> None:
        self.element = element
        self.attribute = attribute

    def definition(self, path: AttrPath) -> AttributeDef | None:
        if path.schema is not None or path.sub_attribute is not None:
            return None  # sub-attributes have no sub-attributes of their own (RFC 7643 §2.3.8)
        return self.attribute.sub_attribute(path.attribute)

    def never_returned(self, path: AttrPath) -> bool:
        definition = self.definition(path)
        return definition is not None and definition.returned == NEVER

    def values(self, path: AttrPath) -> list:
        definition = self.definition(path)
        value = None if definition is None else lookup(self.element, definition.name)
        if isinstance(value, list):
            return [item for item in value if item is not None]
        return [] if value is None else [value]

    def value_path_attribute(self, path: AttrPath) -> AttributeDef | None:
        return None  # the grammar has no value path inside a value path

    def elements(self, path: AttrPath) -> list:
        return []


def matches(expr: Filter, document: dict, resource: ResourceTypeDef) -> bool:
    """Whether ``document``, a resource of type ``resource``, satisfies ``expr``.

    :raises InvalidFilter: the filter compares in a way the attribute's type does not allow
        (e.g. ``active gt true``), or a dateTime value does not parse; raised whatever the
        document holds, see :func:`validate`.
    """
    scope = _DocumentScope(document, resource)
    _check(expr, scope)
    return _evaluate(expr, scope)


def matcher(expr: Filter, resource: ResourceTypeDef) -> Callable[[dict], bool]:
    """A predicate for ``expr`` over documents of ``resource``, type-checked once, here.

    For filtering many documents: :func:`matches` checks the whole filter again for every
    document, which at 50,000 users is 50,000 identical checks.

    :raises InvalidFilter: as :func:`validate`, before any document is looked at.
    """
    validate(expr, resource)
    return lambda document: _evaluate(expr, _DocumentScope(document, resource))


def matches_element(expr: Filter, element: dict, attribute: AttributeDef) -> bool:
    """Whether one element of the multi-valued complex ``attribute`` satisfies ``expr``.

    Paths in ``expr`` are relative to the element (``type eq "work"``), as inside
    ``emails[...]`` in a filter or a PATCH path (RFC 7644 §3.5.2).

    :raises InvalidFilter: as :func:`matches`.
    """
    scope = _ElementScope(element, attribute)
    _check(expr, scope)
    return _evaluate(expr, scope)


def validate(expr: Filter, resource: ResourceTypeDef) -> None:
    """Raise InvalidFilter if ``expr`` cannot be evaluated for ``resource``, whatever the data.

    :func:`matches` calls this itself; call it once up front so that a filter such as
    ``active gt true`` is refused even when no document is there to test.

    :raises InvalidFilter: a comparison the attribute's type does not allow, or an attribute
        that is never returned.
    """
    _check(expr, _DocumentScope({}, resource))


def _check(expr: Filter, scope: _Scope) -> None:
    """Type-check every comparison in ``expr`` against the definitions ``scope`` resolves,
    and refuse every path to an attribute that is never returned."""
    stack: list[tuple[Filter, _Scope]] = [(expr, scope)]
    while stack:
        node, current = stack.pop()
        if isinstance(node, And | Or):
            stack += [(node.left, current), (node.right, current)]
            continue
        if isinstance(node, Not):
            stack.append((node.expr, current))
            continue
        if current.never_returned(node.path):
            # RFC 7643 §4.1.1: the password's hash "SHALL NOT be returnable"; a filter that
            # tests it (`password sw "scrypt:a"`) would return it one character at a time.
            raise InvalidFilter(
                f"filter: '{node.path}' is never returned (returned \"never\", RFC 7643 §7), "
                "so no filter may test it: which resources match would reveal its value"
            )
        if isinstance(node, ValuePathFilter):
            attribute = current.value_path_attribute(node.path)
            if attribute is not None:
                stack.append((node.expr, _ElementScope({}, attribute)))
        elif isinstance(node, Compare):
            definition = current.definition(node.path)
            if definition is not None:
                _comparison(node, definition)


def _evaluate(expr: Filter, scope: _Scope) -> bool:
    """Evaluate a checked ``expr`` in ``scope``; and/or chains are walked without recursion."""
    if isinstance(expr, And | Or):
        terms = operands(expr)
        if isinstance(expr, And):
            return all(_evaluate(term, scope) for term in terms)
        return any(_evaluate(term, scope) for term in terms)
    if isinstance(expr, Not):
        return not _evaluate(expr.expr, scope)
    if isinstance(expr, ValuePathFilter):
        attribute = scope.value_path_attribute(expr.path)
        if attribute is None:
            return False
        return any(
            _evaluate(expr.expr, _ElementScope(element, attribute))
            for element in scope.elements(expr.path)
        )
    definition = scope.definition(expr.path)
    if definition is None:
        return False  # an unknown attribute matches nothing, even with pr or ne
    if isinstance(expr, Present):
        return any(_is_present(value) for value in scope.values(expr.path))
    return _comparison(expr, definition)(scope.values(expr.path))


def _is_present(value: object) -> bool:
    """RFC 7644 §3.4.2.2 ``pr``: a value that is not null, "", [] or an all-empty object."""
    if isinstance(value, dict):
        return any(item not in (None, "", [], {}) for item in value.values())
    return value not in (None, "", [])


def _comparison(node: Compare, definition: AttributeDef) -> ValueTest:
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
        inner = _comparison(node, value_definition)
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
        return lambda values: any(_is_present(value) for value in values) == wanted
    test = _value_test(op, node.value, definition, where)
    if op == "ne":
        return lambda values: not values or any(test(value) for value in values)
    return lambda values: any(test(value) for value in values)


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
    # Strings and references; also dateTimes under co/sw/ew, compared as text.
    fold = _identity if definition.case_exact and kind != DATETIME else str.casefold
    # A number or boolean operand compares as its JSON text (a bare `employeeNumber eq 42`).
    expected_text = fold(operand if isinstance(operand, str) else render_value(operand))
    textual = _STRING_OPERATORS[op]
    return lambda value: isinstance(value, str) and textual(fold(value), expected_text)


def _identity(text: str) -> str:
    return text


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


def equality_terms(expr: Filter, resource: ResourceTypeDef) -> list[tuple[str, str]]:
    """Index hints: (canonical attribute name, value) pairs every match satisfies with ``eq``.

    Taken from a top-level ``eq`` comparison or the conjuncts of a top-level ``and``, on the
    :data:`INDEXABLE_ATTRIBUTES` only, with string operands. Values are as written: fold them
    as the attribute's caseExact says before looking them up. The caller must still run
    :func:`matches` on what the index returns. Empty when there is no such term.
    """
    terms: list[tuple[str, str]] = []
    stack: list[Filter] = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, And):
            stack += [node.right, node.left]
        elif isinstance(node, Compare) and node.op == "eq" and isinstance(node.value, str):
            resolved = resolve(node.path, resource)
            if (
                resolved is not None
                and resolved.container is None
                and resolved.sub_attribute is None
                and resolved.attribute.name in INDEXABLE_ATTRIBUTES
                and resolved.attribute.type == STRING
                and not resolved.attribute.multi_valued
            ):
                terms.append((resolved.attribute.name, node.value))
    return terms
