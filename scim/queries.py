"""A SCIM filter and sortBy in the store's terms: the :class:`storage.query.Query` of a request.

The service hands the repository both forms of one query (see :mod:`storage.query`): the
exact Python matcher and sort key it has always used, which the embedded stores run, and a
translation into the store's condition language, which PostgreSQL runs in SQL. A translation
is *exact* only where the two agree on every document the schema allows:

- string and reference attributes, single- or multi-valued, with every operator (case folded
  unless the attribute is caseExact), booleans with ``eq``/``ne`` (``active eq false``),
  ``pr``, ``eq null``/``ne null``, ``emails[...]``, and ``and``/``or``/``not`` of those;
- ``meta.created`` and ``meta.lastModified`` compared with a dateTime, since the store writes
  them itself in one fixed-width UTC form, so text order is time order (an operand finer than
  a millisecond is not translated);
- sortBy on a single-valued string, reference, ``meta.created`` or ``meta.lastModified``.

Everything else (numbers, other dateTimes, sorting by a multi-valued attribute) is
left out of the condition: for ``and`` the translated terms still narrow the search, and the
store runs the Python matcher on what they select; for ``or`` and ``not`` nothing is narrowed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from scim import definitions
from scim.definitions import AttributeDef, ResourceTypeDef
from scim.filter import And, Compare, Filter, Not, Or, Present, ValuePathFilter
from scim.filter.compare import as_boolean
from scim.filter.tree import operands, render_value
from scim.paths import AttrPath, Resolved, resolve
from storage import query as store
from storage.values import timestamp

# Written by the repository in one form (storage.values.timestamp), never by a client.
_STAMPED = frozenset({("meta", "created"), ("meta", "lastModified")})
_SUBSTRING = frozenset({"co", "sw", "ew"})
# Types compared as text (dateTimes only under co/sw/ew, handled before).
_TEXTUAL = frozenset(
    {definitions.STRING, definitions.REFERENCE, definitions.BINARY, definitions.DATETIME}
)

# (condition, exact): the condition selects every match, and exactly the matches if exact.
# None: no narrowing at all.
Translated = tuple[store.Condition | None, bool]


def store_query(
    expr: Filter | None,
    matches: Callable[[dict], bool] | None,
    sort_by: AttrPath | None,
    sort_key: Callable[[dict], tuple] | None,
    ascending: bool,
    resource: ResourceTypeDef,
    *,
    offset: int,
    limit: int,
    attributes: list[AttrPath] | None = None,
) -> store.Query:
    """The repository query for one SCIM list or search request on ``resource``.

    :param attributes: the request's ``attributes``: the store may leave other top-level
        attributes out of what it returns.
    """
    where, exact = translate(expr, resource) if expr is not None else (None, True)
    return store.Query(
        matches=matches,
        where=where,
        exact=exact,
        sort_key=sort_key,
        descending=not ascending,
        order=order(sort_by, resource, ascending) if sort_key is not None else None,
        offset=offset,
        limit=limit,
        keys=wanted_keys(attributes, resource) if attributes else None,
    )


def wanted_keys(attributes: list[AttrPath], resource: ResourceTypeDef) -> frozenset[str] | None:
    """The document keys ``attributes=`` needs: each attribute's top-level key (an
    extension's URN), and ``schemas``, ``id`` and ``meta``, which every resource carries;
    None (everything) if a path does not resolve to an attribute."""
    keys = {"schemas", "id", "meta"}
    for path in attributes:
        resolved = resolve(path, resource)
        if resolved is None:
            return None
        keys.add(resolved.container or resolved.attribute.name)
    return frozenset(keys)


def translate(expr: Filter, resource: ResourceTypeDef) -> Translated:
    """``expr`` (already validated) as a store condition over documents of ``resource``."""
    return _translate(expr, lambda path: _resolve_top(path, resource))


def order(
    sort_by: AttrPath | None, resource: ResourceTypeDef, ascending: bool
) -> store.Order | None:
    """``sortBy`` as a store order, or None when only the Python sort key can say it."""
    if sort_by is None:
        return None
    resolved = resolve(sort_by, resource)
    if (
        resolved is None
        or resolved.sub_attribute is None
        and resolved.attribute.type == (definitions.COMPLEX)
    ):
        return None
    definition = resolved.definition
    path = _path(resolved)
    if not _single(resolved):
        return None
    if definition.type in (definitions.STRING, definitions.REFERENCE):
        return store.Order(path, descending=not ascending, fold=not definition.case_exact)
    if definition.type == definitions.DATETIME and path in _STAMPED:
        return store.Order(path, descending=not ascending)
    return None


# -- translation ---------------------------------------------------------------------------

# Where a filter path leads: its store path, its definition, whether no list lies on it.
Target = tuple[store.Path, AttributeDef, bool]
# A scope finds a path's target, or None when it names nothing there (which matches nothing,
# even with pr or ne).
Scope = Callable[[AttrPath], Target | None]


def _translate(expr: Filter, scope: Scope) -> Translated:
    if isinstance(expr, And):
        parts = [_translate(term, scope) for term in operands(expr)]
        narrowing = tuple(condition for condition, _ in parts if condition is not None)
        exact = all(exact for _, exact in parts)
        return (store.All(narrowing) if narrowing else None), exact
    if isinstance(expr, Or):
        parts = [_translate(term, scope) for term in operands(expr)]
        if any(condition is None for condition, _ in parts):
            return None, False
        return store.Any_(tuple(c for c, _ in parts if c is not None)), all(e for _, e in parts)
    if isinstance(expr, Not):
        condition, exact = _translate(expr.expr, scope)
        return (store.Not(condition), True) if exact and condition is not None else (None, False)
    if isinstance(expr, ValuePathFilter):
        return _value_path(expr, scope)
    found = scope(expr.path)
    if found is None:
        return store.NOTHING, True
    path, definition, single = found
    if definition.type == definitions.COMPLEX:
        # `emails co "@x"` and `emails pr` compare or test each element's value, and
        # `emails pr` also counts an element with any member present: see evaluate.py.
        if isinstance(expr, Present):
            return store.Present(path, single=single), True
        value_definition = definition.sub_attribute("value")
        if value_definition is None:
            return None, False
        path, definition = (*path, "value"), value_definition
        single = single and not value_definition.multi_valued
    if isinstance(expr, Present):
        return store.Present(path, single=single), True
    return _compare(expr, path, definition, single)


def _compare(node: Compare, path: store.Path, definition: AttributeDef, single: bool) -> Translated:
    if node.value is None:  # eq null: no value; ne null: some value (RFC 7643 §2.5)
        present = store.Present(path, single=single)
        return (present if node.op == "ne" else store.Not(present)), True
    kind = definition.type
    if kind == definitions.DATETIME and node.op not in _SUBSTRING:
        return _stamped_time(node, path)
    if kind == definitions.BOOLEAN:
        # As evaluate.py: eq/ne only (checked before), the operand true/false or their names.
        expected = as_boolean(node.value)
        if expected is None:
            return None, False
        return store.Truth(path, node.op, expected, single=single), True
    if kind not in _TEXTUAL:
        return None, False  # booleans and numbers compare by type in Python only
    # As evaluate.py: a number or boolean operand compares as its JSON text; dateTimes under
    # co/sw/ew compare as case-folded text.
    text = node.value if isinstance(node.value, str) else render_value(node.value)
    fold = not definition.case_exact or kind == definitions.DATETIME
    return store.Text(path, node.op, text, fold=fold, single=single), True


def _stamped_time(node: Compare, path: store.Path) -> Translated:
    """A dateTime comparison the store can make as text, when it can."""
    if path not in _STAMPED or not isinstance(node.value, str):
        return None, False
    try:
        moment = datetime.fromisoformat(node.value)
    except ValueError:
        return None, False
    if moment.microsecond % 1000:
        return None, False  # finer than the stored milliseconds: text order would round
    return store.Text(path, node.op, timestamp(moment), single=True), True


def _value_path(expr: ValuePathFilter, scope: Scope) -> Translated:
    found = scope(expr.path)
    if found is None:
        return store.NOTHING, True
    path, attribute, _ = found
    inner, exact = _translate(expr.expr, lambda sub: _resolve_in_element(sub, attribute))
    if inner is None:
        return None, False
    return store.Element(path, inner), exact


def _resolve_top(
    path: AttrPath, resource: ResourceTypeDef
) -> tuple[store.Path, AttributeDef, bool] | None:
    resolved = resolve(path, resource)
    if resolved is None:
        return None
    return _path(resolved), resolved.definition, _single(resolved)


def _resolve_in_element(path: AttrPath, attribute: AttributeDef) -> Target | None:
    if path.schema is not None or path.sub_attribute is not None:
        return None  # sub-attributes have no sub-attributes (RFC 7643 §2.3.8)
    sub = attribute.sub_attribute(path.attribute)
    if sub is None:
        return None
    return (sub.name,), sub, not sub.multi_valued


def _path(resolved: Resolved) -> store.Path:
    """The document keys of a resolved path: the extension's URN first, if any."""
    keys = [] if resolved.container is None else [resolved.container]
    keys.append(resolved.attribute.name)
    if resolved.sub_attribute is not None:
        keys.append(resolved.sub_attribute.name)
    return tuple(keys)


def _single(resolved: Resolved) -> bool:
    """Whether no list lies on the path."""
    sub = resolved.sub_attribute
    return not resolved.attribute.multi_valued and (sub is None or not sub.multi_valued)
