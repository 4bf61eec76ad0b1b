"""Translate :mod:`storage.query` conditions and orders into SQL over the ``resources`` table.

The SQL holds exactly when the condition does (a property test checks it against a Python
evaluator of the same language). How each rule of the language is kept:

- *Values at a path* come from ``jsonb_path_query`` in lax mode, with ``[*][*]`` after each
  key: lists met on the way are searched element by element, and lists directly inside
  lists are flattened too, two deep (SCIM documents never put a list in a list; deeper
  nesting is not looked into). Nulls are dropped, as absent. A ``single`` path (no list on
  it) is read directly with ``#>``, which is much cheaper.
- *Code-point order*: every text comparison and sort is ``COLLATE "C"``, and UTF-8 byte
  order is code-point order. Text extracted from ``folded`` (the document with its strings
  casefolded by Python at write time) gives exact ``str.casefold`` semantics.
- ``co``/``sw``/``ew`` are ``LIKE`` with ``%``, ``_`` and ``\\`` escaped in the operand.
- A value PostgreSQL cannot hold (U+0000, a lone surrogate) is in no stored string, so a
  comparison with one is rewritten into an equivalent one without it (:func:`_storable_test`).
- Every translated condition is a non-NULL boolean, so ``NOT`` is exact.

Every value (operands, paths) is a bound parameter; the SQL text depends only on the shape
of the condition, so psycopg prepares a shape once it has been used a few times.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import count

from psycopg import sql

from storage.query import (
    All,
    Any_,
    Condition,
    Element,
    Not,
    Order,
    Path,
    Present,
    Text,
    Truth,
)
from storage.values import UNSTORABLE

# The columns of the row under test (the query names the resources table "r").
DOCUMENT = sql.SQL("r.doc")
FOLDED = sql.SQL("r.folded")

_COMPARISONS = {"eq": "=", "ne": "<>", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}
_PATTERNS = {"co": "%{}%", "sw": "{}%", "ew": "%{}"}
TRUE = sql.SQL("TRUE")
FALSE = sql.SQL("FALSE")

# Present: a string but "", a list but [], an object only with a member that is present.
_PRESENT = """CASE jsonb_typeof({value})
    WHEN 'string' THEN {value} <> '""'::jsonb
    WHEN 'array' THEN {value} <> '[]'::jsonb
    WHEN 'object' THEN EXISTS (
        SELECT FROM jsonb_each({value}) AS member
        WHERE member.value NOT IN ('null'::jsonb, '""'::jsonb, '[]'::jsonb, '{{}}'::jsonb))
    WHEN 'null' THEN FALSE
    ELSE TRUE
END"""


def storable(text: str) -> bool:
    """Whether PostgreSQL can hold ``text`` (no U+0000, no lone surrogate)."""
    return "\x00" not in text if text.isascii() else UNSTORABLE.search(text) is None


def escape_like(text: str) -> str:
    """``text`` as a LIKE pattern that matches only itself (default escape character)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def json_path(path: Path) -> str:
    """The lax SQL/JSON path of the values at ``path``, lists flattened two deep.

    Keys are written as JSON strings, whose escapes SQL/JSON path strings share.
    """
    return "$" + "".join(f".{json.dumps(key)}[*][*]" for key in path)


@dataclass(frozen=True)
class _Roots:
    """The JSON value paths start from: as stored, and with its strings casefolded."""

    document: sql.Composable
    folded: sql.Composable


class SqlBuilder:
    """Collects the bound parameters of one statement while conditions are translated."""

    def __init__(self) -> None:
        self.params: dict[str, object] = {}
        self._aliases = count(1)

    def param(self, value: object, cast: str = "") -> sql.Composable:
        """A placeholder bound to ``value``, optionally cast (``"jsonpath"``, ``"text[]"``)."""
        name = f"p{len(self.params) + 1}"
        self.params[name] = value
        placeholder = sql.Placeholder(name)
        return sql.SQL("{}::{}").format(placeholder, sql.SQL(cast)) if cast else placeholder

    def where(self, condition: Condition | None) -> sql.Composable:
        """A boolean SQL expression over the row ``r`` that holds when ``condition`` does."""
        if condition is None:
            return TRUE
        return self._condition(condition, _Roots(DOCUMENT, FOLDED))

    def order_by(self, order: Order | None) -> sql.Composable:
        """The ORDER BY list: ``order``'s strings, then insertion order (ties, and no order)."""
        if order is None or not all(storable(key) for key in order.path):
            return sql.SQL("r.seq")
        root = FOLDED if order.fold else DOCUMENT
        path = self.param(list(order.path), "text[]")
        # Documents without a non-empty string there sort as NULL: last ascending, first
        # descending, among themselves by insertion order as every tie is.
        key = sql.SQL(
            "(CASE WHEN jsonb_typeof({root} #> {path}) = 'string' "
            "THEN NULLIF({root} #>> {path}, '') END) COLLATE \"C\""
        ).format(root=root, path=path)
        direction = sql.SQL("DESC NULLS FIRST" if order.descending else "ASC NULLS LAST")
        return sql.SQL("{} {}, r.seq").format(key, direction)

    # -- conditions -----------------------------------------------------------------------

    def _condition(self, condition: Condition, roots: _Roots) -> sql.Composable:
        if isinstance(condition, Text):
            return self._text(condition, roots)
        if isinstance(condition, Truth):
            return self._truth(condition, roots)
        if isinstance(condition, Present):
            return self._present(condition, roots)
        if isinstance(condition, Element):
            return self._element(condition, roots)
        if isinstance(condition, All):
            return self._joined(condition.terms, roots, "AND", TRUE)
        if isinstance(condition, Any_):
            return self._joined(condition.terms, roots, "OR", FALSE)
        if isinstance(condition, Not):
            return sql.SQL("(NOT {})").format(self._condition(condition.term, roots))
        raise TypeError(f"not a condition: {condition!r}")

    def _joined(
        self, terms: tuple[Condition, ...], roots: _Roots, operator: str, empty: sql.Composable
    ) -> sql.Composable:
        if not terms:
            return empty
        parts = [self._condition(term, roots) for term in terms]
        return sql.SQL("({})").format(sql.SQL(f" {operator} ").join(parts))

    def _text(self, condition: Text, roots: _Roots) -> sql.Composable:
        operand = condition.value.casefold() if condition.fold else condition.value
        if not all(storable(key) for key in condition.path):
            # No stored document has such a key: there is no value at the path.
            return TRUE if condition.op == "ne" else FALSE
        root = roots.folded if condition.fold else roots.document
        if condition.single:
            path = self.param(list(condition.path), "text[]")
            value = sql.SQL("({} #> {})").format(root, path)
            text = sql.SQL("({} #>> {})").format(root, path)
            string = self._string_test(condition.op, operand, text)
            some = sql.SQL("COALESCE(jsonb_typeof({}) = 'string' AND {}, FALSE)").format(
                value, string
            )
            if condition.op != "ne":
                return some
            # ne: no value at the path, or a string value other than the operand.
            return sql.SQL("(COALESCE(jsonb_typeof({}), 'null') = 'null' OR {})").format(
                value, some
            )
        values = self._values(root, condition.path)
        string = self._string_test(condition.op, operand, sql.SQL("(v.value #>> '{}')"))
        some = sql.SQL(
            "EXISTS (SELECT FROM {} AS v(value) WHERE jsonb_typeof(v.value) = 'string' AND {})"
        ).format(values, string)
        if condition.op != "ne":
            return some
        values_again = self._values(root, condition.path)
        none = sql.SQL(
            "NOT EXISTS (SELECT FROM {} AS v(value) WHERE jsonb_typeof(v.value) <> 'null')"
        ).format(values_again)
        return sql.SQL("({} OR {})").format(none, some)

    def _string_test(self, op: str, operand: str, text: sql.Composable) -> sql.Composable:
        """``text`` (a string value at the path) compared with ``operand`` by ``op``."""
        op, operand_or_truth = _storable_test(op, operand)
        if isinstance(operand_or_truth, bool):
            return TRUE if operand_or_truth else FALSE
        if op in _PATTERNS:
            pattern = _PATTERNS[op].format(escape_like(operand_or_truth))
            return sql.SQL('({} COLLATE "C" LIKE {})').format(text, self.param(pattern, "text"))
        return sql.SQL('({} COLLATE "C" {} {})').format(
            text, sql.SQL(_COMPARISONS[op]), self.param(operand_or_truth, "text")
        )

    def _truth(self, condition: Truth, roots: _Roots) -> sql.Composable:
        """On the folded document, where "True" and "TRUE" are "true" as casefold makes them."""
        if not all(storable(key) for key in condition.path):
            return TRUE if condition.op == "ne" else FALSE
        wanted = condition.value if condition.op == "eq" else not condition.value
        # The boolean, or the string naming it.
        names = self.param([json.dumps(wanted), json.dumps(str(wanted).lower())], "jsonb[]")
        if condition.single:
            path = self.param(list(condition.path), "text[]")
            value = sql.SQL("({} #> {})").format(roots.folded, path)
            some = sql.SQL("COALESCE({} = ANY({}), FALSE)").format(value, names)
            if condition.op == "eq":
                return some
            return sql.SQL("(COALESCE(jsonb_typeof({}), 'null') = 'null' OR {})").format(
                value, some
            )
        some = sql.SQL("EXISTS (SELECT FROM {} AS v(value) WHERE v.value = ANY({}))").format(
            self._values(roots.folded, condition.path), names
        )
        if condition.op == "eq":
            return some
        none = sql.SQL(
            "NOT EXISTS (SELECT FROM {} AS v(value) WHERE jsonb_typeof(v.value) <> 'null')"
        ).format(self._values(roots.folded, condition.path))
        return sql.SQL("({} OR {})").format(none, some)

    def _present(self, condition: Present, roots: _Roots) -> sql.Composable:
        if not all(storable(key) for key in condition.path):
            return FALSE
        if condition.single:
            path = self.param(list(condition.path), "text[]")
            value = sql.SQL("({} #> {})").format(roots.document, path)
            # No value at all is SQL NULL, which the CASE would take for a number.
            return sql.SQL("({} IS NOT NULL AND {})").format(
                value, sql.SQL(_PRESENT).format(value=value)
            )
        test = sql.SQL(_PRESENT).format(value=sql.SQL("v.value"))
        return sql.SQL("EXISTS (SELECT FROM {} AS v(value) WHERE {})").format(
            self._values(roots.document, condition.path), test
        )

    def _element(self, condition: Element, roots: _Roots) -> sql.Composable:
        if not all(storable(key) for key in condition.path):
            return FALSE
        alias = sql.Identifier(f"e{next(self._aliases)}")
        inner = _Roots(sql.SQL("{}.document").format(alias), sql.SQL("{}.folded").format(alias))
        test = self._condition(condition.where, inner)
        # The stored and the folded document have the same shape, so their values at a
        # path come in the same order: ROWS FROM pairs each element with its folded twin.
        return sql.SQL(
            "EXISTS (SELECT FROM ROWS FROM ({}, {}) AS {}(document, folded) "
            "WHERE jsonb_typeof({}.document) = 'object' AND {})"
        ).format(
            self._values(roots.document, condition.path),
            self._values(roots.folded, condition.path),
            alias,
            alias,
            test,
        )

    def _values(self, root: sql.Composable, path: Path) -> sql.Composable:
        """The set of values at ``path`` below ``root`` (nulls included: callers skip them)."""
        return sql.SQL("jsonb_path_query({}, {})").format(
            root, self.param(json_path(path), "jsonpath")
        )


def _storable_test(op: str, operand: str) -> tuple[str, str | bool]:
    """An equivalent test on stored strings whose operand PostgreSQL can hold.

    Stored strings never contain U+0000 or a lone surrogate. So no stored string equals,
    contains, starts or ends with an operand holding one (False), every one differs from it
    (True), and an ordering compares as it would with the operand cut before that
    character: ``s < "ab\\0c"`` exactly when ``s <= "ab"``; and as no stored character lies
    between U+D7FF and U+E000, ``s < "ab\\ud800"`` exactly when ``s < "ab\\ue000"``.
    """
    cut = next((i for i, char in enumerate(operand) if not storable(char)), None)
    if cut is None:
        return op, operand
    if op == "ne":
        return op, True
    if op in ("eq", "co", "sw", "ew"):
        return op, False
    prefix = operand[:cut]
    below = op in ("lt", "le")
    if operand[cut] == "\x00":
        return ("le", prefix) if below else ("gt", prefix)
    return ("lt" if below else "ge"), prefix + "\ue000"
