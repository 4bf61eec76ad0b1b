"""Queries a repository answers in one call: which documents match, in what order, which page.

:meth:`storage.repository.Repository.query` takes a :class:`Query`. It carries the test twice:

- ``matches`` (and ``sort_key``): the exact test and order, as Python callables over stored
  documents. The embedded stores run these, over their in-memory documents.
- ``where`` (and ``order``): the same test in the small, store-neutral language below, for a
  store that evaluates queries itself (PostgreSQL, in SQL). ``exact`` says whether ``where``
  decides alone; if not, it is a *superset* of the matches (every document ``matches`` accepts
  satisfies ``where``), and the store must still run ``matches`` on what it finds, and then
  sort and page in Python too.

The caller (the SCIM service) builds both from one SCIM filter; this module knows nothing of
SCIM. Paths are tuples of document keys from the root, compared exactly (stored documents use
canonical names); a list met on the way is searched element by element ("some element").
Values at a path are the non-null values found there, lists flattened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

Path = tuple[str, ...]

# Text comparisons; ordering is by Unicode code point (never a locale's collation).
TEXT_OPERATORS = frozenset({"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"})


@dataclass(frozen=True)
class Text:
    """A string value at ``path`` compares with ``value`` by ``op``.

    ``eq co sw ew gt ge lt le``: some value at the path is a string and satisfies the test.
    ``ne``: there is no value at the path, or some value is a string other than ``value``.
    ``fold``: both sides are compared after ``str.casefold``.
    ``single``: no list lies on the path (the caller's schema says so), so a store may read
    the one value directly instead of searching lists.
    """

    path: Path
    op: str
    value: str
    fold: bool = False
    single: bool = False

    def __post_init__(self) -> None:
        if self.op not in TEXT_OPERATORS:
            raise ValueError(f"unknown text operator {self.op!r}")


@dataclass(frozen=True)
class Truth:
    """A boolean at ``path`` compares with ``value``; the strings "true" and "false", in any
    case (after ``str.casefold``), count as the booleans they name.

    ``eq``: some value at the path is ``value``. ``ne``: there is no value at the path, or
    some value is the other boolean.
    """

    path: Path
    op: str
    value: bool
    single: bool = False

    def __post_init__(self) -> None:
        if self.op not in ("eq", "ne"):
            raise ValueError(f"a truth compares with eq or ne, not {self.op!r}")


@dataclass(frozen=True)
class Present:
    """Some value at ``path`` is present: not ``""``, ``[]`` or ``{}``, and an object only
    if one of its members is not null, ``""``, ``[]`` or ``{}``."""

    path: Path
    single: bool = False


@dataclass(frozen=True)
class Element:
    """Some object in the list (or the one object) at ``path`` satisfies ``where``, whose
    paths start at that object; values there that are not objects are no elements."""

    path: Path
    where: Condition


@dataclass(frozen=True)
class All:
    """Every term holds (``All(())`` always holds)."""

    terms: tuple[Condition, ...]


@dataclass(frozen=True)
class Any_:
    """Some term holds (``Any_(())`` never holds: the condition that matches nothing)."""

    terms: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    """``term`` does not hold."""

    term: Condition


Condition = Text | Truth | Present | Element | All | Any_ | Not

NOTHING = Any_(())


@dataclass(frozen=True)
class Order:
    """Sort by the string at ``path`` (a path with no list on it), compared by code point
    after ``str.casefold`` when ``fold``. Documents without a string there (or with ``""``)
    come last when ascending and first when descending; ties keep insertion order."""

    path: Path
    descending: bool = False
    fold: bool = False


@dataclass(frozen=True)
class Query:
    """What :meth:`Repository.query` is asked: see the module docstring.

    :param offset: how many of the sorted matches to skip; :param limit: how many to return
        at most (None: all).
    :param keys: the top-level keys the caller will read (None: all); a store may leave the
        others out of the documents it returns. ``id`` and ``meta`` are always kept.
    """

    matches: Callable[[dict], bool] | None = None
    where: Condition | None = None
    exact: bool = True
    sort_key: Callable[[dict], Any] | None = None
    descending: bool = False
    order: Order | None = None
    offset: int = 0
    limit: int | None = None
    keys: frozenset[str] | None = None

    @property
    def sorted_in_store(self) -> bool:
        """Whether ``order`` says all of the sort (there is no sort, or ``order`` is it)."""
        return self.sort_key is None or self.order is not None

    @property
    def answerable_in_store(self) -> bool:
        """Whether a store that evaluates ``where``/``order`` itself needs no Python at all."""
        filtered = self.matches is None or (self.where is not None and self.exact)
        return filtered and self.sorted_in_store


@dataclass(frozen=True)
class Found:
    """A page of matches and how many matched in all.

    The documents may be the stored ones, as :meth:`Repository.scan` gives them: never change
    one; copy those kept (:func:`storage.values.clone`).
    """

    documents: list[dict]
    total: int


def answer_in_python(documents: Iterable[dict], query: Query) -> Found:
    """Filter, sort and page ``documents`` (in insertion order) with ``query``'s callables.

    The embedded stores answer every query this way; a store that evaluates ``where`` itself
    uses it for what ``where`` only narrowed down.
    """
    matched = (
        [doc for doc in documents if query.matches(doc)]
        if query.matches is not None
        else list(documents)
    )
    if query.sort_key is not None:
        # reverse=True keeps equal keys in insertion order, as the ascending sort does.
        matched.sort(key=query.sort_key, reverse=query.descending)
    end = None if query.limit is None else query.offset + query.limit
    return Found(matched[query.offset : end], len(matched))


def holds(condition: Condition, document: dict) -> bool:
    """Whether ``document`` satisfies ``condition``: the language's meaning, in Python.

    The reference a store's own translation (SQL) is tested against. To test many documents,
    build the test once with :func:`predicate`.
    """
    return predicate(condition)(document)


def predicate(condition: Condition) -> Callable[[dict], bool]:
    """``condition`` as a test of one document, built once (the meaning :func:`holds` has).

    Property tests hold a store's own translation (SQL) to it over many documents: walking
    the condition for each document cost 16 µs a user for the control panel's six-attribute
    search; built once, the walk is paid once.
    """
    if isinstance(condition, All):
        every = [predicate(term) for term in condition.terms]
        return lambda document: all(test(document) for test in every)
    if isinstance(condition, Any_):
        some = [predicate(term) for term in condition.terms]
        return lambda document: any(test(document) for test in some)
    if isinstance(condition, Not):
        term = predicate(condition.term)
        return lambda document: not term(document)
    path = condition.path
    if isinstance(condition, Element):
        inner = predicate(condition.where)
        return lambda document: any(
            inner(element) for element in values_at(document, path) if isinstance(element, dict)
        )
    values = _reader(path, condition.single)
    if isinstance(condition, Present):
        return lambda document: any(_present(value) for value in values(document))
    if isinstance(condition, Truth):
        wanted, negated = condition.value, condition.op == "ne"

        def truth(document: dict) -> bool:
            found = values(document)
            if negated:
                return not found or any(_truth(value) is (not wanted) for value in found)
            return any(_truth(value) is wanted for value in found)

        return truth
    fold = str.casefold if condition.fold else _same
    expected = fold(condition.value)
    test = _TESTS[condition.op]
    if condition.op == "ne":
        return lambda document: (
            not (found := values(document))
            or any(test(fold(value), expected) for value in found if isinstance(value, str))
        )
    return lambda document: any(
        test(fold(value), expected) for value in values(document) if isinstance(value, str)
    )


def _reader(path: Path, single: bool) -> Callable[[dict], list]:
    """The values at ``path``: :func:`values_at`, or where no list lies on the path (``single``)
    the one value read directly, as the condition language allows."""
    if not single:
        return lambda document: values_at(document, path)

    def read(document: dict) -> list:
        node: object = document
        for key in path:
            if not isinstance(node, dict):
                return []
            node = node.get(key)
        return [] if node is None else [node]

    return read


def values_at(node: object, path: Path) -> list:
    """The non-null values at ``path`` below ``node``: every list on the way, and at the
    end, flattened (lists inside lists too)."""
    if isinstance(node, list):
        return [value for item in node for value in values_at(item, path)]
    if node is None:
        return []
    if not path:
        return [node]
    if isinstance(node, dict) and path[0] in node:
        return values_at(node[path[0]], path[1:])
    return []


def _truth(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.casefold() in ("true", "false"):
        return value.casefold() == "true"
    return None


def _present(value: object) -> bool:
    if isinstance(value, dict):
        return any(not _empty(member) for member in value.values())
    return not _empty(value)


def _empty(value: object) -> bool:
    return value is None or (isinstance(value, str | list | dict) and not value)


def _same(text: str) -> str:
    return text


_TESTS: dict[str, Callable[[str, str], bool]] = {
    "eq": lambda actual, expected: actual == expected,
    "ne": lambda actual, expected: actual != expected,
    "co": lambda actual, expected: expected in actual,
    "sw": str.startswith,
    "ew": str.endswith,
    "gt": lambda actual, expected: actual > expected,
    "ge": lambda actual, expected: actual >= expected,
    "lt": lambda actual, expected: actual < expected,
    "le": lambda actual, expected: actual <= expected,
}
