"""Property test: PostgreSQL answers every query exactly as the query language says.

Random documents and random conditions, orders and pages; the repository's answer (in SQL,
and through the Python fallback) must equal :func:`evaluate`, a plain Python evaluator of
the language written from the docstrings of :mod:`storage.query`, not from the SQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage.postgres.conditions import escape_like, json_path
from storage.postgres.repository import PostgresRepository
from storage.query import (
    NOTHING,
    TEXT_OPERATORS,
    All,
    Any_,
    Condition,
    Element,
    Not,
    Order,
    Path,
    Present,
    Query,
    Text,
    holds,
)
from tests import pgserver
from tests.storage_contract import INDEXES

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def repository() -> Iterator[PostgresRepository]:
    opened = PostgresRepository(pgserver.clean_database(), INDEXES)
    yield opened
    opened.close()


# -- the reference: the language's meaning in Python (storage.query.holds), and its order ----


def sort_value(document: dict, order: Order) -> str | None:
    """The string ``order`` sorts by (None: no string there, or "")."""
    value: Any = document
    for key in order.path:
        value = value.get(key) if isinstance(value, dict) else None
    if not isinstance(value, str) or value == "":
        return None
    return value.casefold() if order.fold else value


def answer(documents: list[dict], query: Query) -> tuple[list[str], int]:
    """Ids of the page, and the number of matches, by the reference rules."""
    where = query.where
    matched = [document for document in documents if where is None or holds(where, document)]
    if query.order is not None:
        order = query.order

        def key(document: dict) -> tuple:
            value = sort_value(document, order)
            return (1,) if value is None else (0, value)

        # Stable, and reverse=True keeps ties in insertion order too.
        matched.sort(key=key, reverse=order.descending)
    end = None if query.limit is None else query.offset + query.limit
    return [document["id"] for document in matched[query.offset : end]], len(matched)


# -- random documents -----------------------------------------------------------------------

# Few characters, so that values collide, differ in case (ß folds to ss), need escaping in a
# LIKE pattern, or sit next to what no stored string holds (U+0000, the surrogates).
CHARACTERS = "aAbBß%_\\é😀\x01\ud7ff\ue000"
WORDS = st.one_of(
    st.sampled_from(
        ["", "a", "A", "ab", "AB", "ss", "SS", "ß", "a%", "a_b", "\\", "😀", "\ue000", "a\ue000"]
    ),
    st.text(alphabet=CHARACTERS, max_size=4),
)
LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-2, 2), WORDS)
SUBKEYS = ["x", "type", "value", 'q"uote']


@st.composite
def json_values(draw: st.DrawFn, depth: int = 0, lists_in_a_row: int = 0) -> Any:
    """Any JSON value, with lists directly inside lists at most two deep."""
    shapes = ["leaf", "leaf"]
    if depth < 3:
        shapes += ["object"] + (["list"] if lists_in_a_row < 2 else [])
    shape = draw(st.sampled_from(shapes))
    if shape == "leaf":
        return draw(LEAVES)
    if shape == "object":
        keys = draw(st.lists(st.sampled_from(SUBKEYS), max_size=3, unique=True))
        return {key: draw(json_values(depth + 1)) for key in keys}
    return draw(st.lists(json_values(depth + 1, lists_in_a_row + 1), max_size=3))


@st.composite
def no_list_values(draw: st.DrawFn) -> Any:
    """A value with no list in it: what a ``single`` path may read directly."""
    return draw(st.one_of(LEAVES, st.dictionaries(st.sampled_from(["x", "y"]), LEAVES, max_size=2)))


@st.composite
def documents(draw: st.DrawFn) -> dict:
    """A document whose "s" and "o" hold no list (single paths), and anything elsewhere."""
    document: dict = {}
    # Mostly strings where sorts and single-path comparisons read, so that they compare.
    if draw(st.integers(0, 3)):
        document["s"] = draw(st.one_of(WORDS, WORDS, no_list_values()))
    if draw(st.booleans()):
        document["o"] = draw(st.one_of(no_list_values(), st.builds(dict, x=WORDS)))
    for key in ("m", "l"):
        if draw(st.booleans()):
            document[key] = draw(json_values())
    return document


# -- random conditions ----------------------------------------------------------------------

SINGLE_PATHS: list[Path] = [("s",), ("o", "x"), ("o",)]
PATHS: list[Path] = SINGLE_PATHS + [
    ("m",),
    ("m", "x"),
    ("m", "value"),
    ("m", "x", "type"),
    ("l",),
    ("m", 'q"uote'),
    ("absent",),
    ("nul\x00",),
    (),
]
ELEMENT_PATHS: list[Path] = [("m",), ("l",), ("m", "x"), ("o",), ()]
ELEMENT_SUBPATHS: list[Path] = [("x",), ("type",), ("value",), (), ("x", "value")]
# Operands may hold what no stored string can: U+0000 and lone surrogates.
OPERANDS = st.one_of(
    WORDS, st.sampled_from(["\x00", "a\x00", "A\x00b", "\ud800", "a\udfff", "é\ud83d"])
)
OPS = st.sampled_from(sorted(TEXT_OPERATORS))


def texts(paths: list[Path]) -> st.SearchStrategy[Condition]:
    plain = st.builds(Text, st.sampled_from(paths), OPS, OPERANDS, st.booleans())
    single = st.builds(
        Text, st.sampled_from(SINGLE_PATHS), OPS, OPERANDS, st.booleans(), st.just(True)
    )
    return st.one_of(plain, single)


def presents(paths: list[Path]) -> st.SearchStrategy[Condition]:
    return st.one_of(
        st.builds(Present, st.sampled_from(paths)),
        st.builds(Present, st.sampled_from(SINGLE_PATHS), st.just(True)),
    )


def conditions(paths: list[Path] = PATHS, depth: int = 0) -> st.SearchStrategy[Condition]:
    leaves = st.one_of(texts(paths), presents(paths), st.just(NOTHING), st.just(All(())))

    def extend(inner: st.SearchStrategy[Condition]) -> st.SearchStrategy[Condition]:
        elements = st.builds(
            Element,
            st.sampled_from(ELEMENT_PATHS),
            st.one_of(texts(ELEMENT_SUBPATHS), presents(ELEMENT_SUBPATHS), inner),
        )
        return st.one_of(
            elements,
            st.lists(inner, max_size=3).map(lambda terms: All(tuple(terms))),
            st.lists(inner, max_size=3).map(lambda terms: Any_(tuple(terms))),
            inner.map(Not),
        )

    return st.recursive(leaves, extend, max_leaves=6)


ORDERS = st.one_of(
    st.none(),
    st.builds(
        Order, st.sampled_from([("s",), ("o", "x"), ("absent",)]), st.booleans(), st.booleans()
    ),
)
PAGES = st.tuples(st.integers(0, 4), st.one_of(st.none(), st.integers(0, 4)))


def store(repository: PostgresRepository, drawn: list[dict]) -> list[dict]:
    """Replace everything with ``drawn`` as users; returns them as stored.

    A group that would match anything is stored too: no user query may ever see it.
    """
    with repository.database.connection() as connection:
        connection.execute("DELETE FROM resources")
    with repository.transaction() as tx:
        tx.insert("Group", {"s": "a", "o": {"x": "a"}, "m": [{"x": "a"}], "l": ["a"]})
        return [tx.insert("User", document) for document in drawn]


# -- the properties -------------------------------------------------------------------------


@PROPERTY
@given(
    drawn=st.lists(documents(), max_size=8),
    queries=st.lists(
        st.tuples(st.one_of(st.none(), conditions()), ORDERS, PAGES), min_size=1, max_size=4
    ),
)
def test_sql_selects_sorts_and_pages_as_the_language_says(
    repository: PostgresRepository, drawn: list[dict], queries: list
) -> None:
    stored = store(repository, drawn)
    for where, order, (offset, limit) in queries:
        query = Query(where=where, order=order, offset=offset, limit=limit)
        assert query.answerable_in_store
        found = repository.query("User", query)

        assert ([doc["id"] for doc in found.documents], found.total) == answer(stored, query)


LEAF_CONDITIONS = st.one_of(
    texts(PATHS),
    presents(PATHS),
    st.builds(
        Element,
        st.sampled_from(ELEMENT_PATHS),
        st.one_of(texts(ELEMENT_SUBPATHS), presents(ELEMENT_SUBPATHS)),
    ),
)


@PROPERTY
@given(drawn=st.lists(documents(), max_size=8), leaves=st.lists(LEAF_CONDITIONS, max_size=12))
def test_every_single_test_and_its_negation_select_as_the_language_says(
    repository: PostgresRepository, drawn: list[dict], leaves: list[Condition]
) -> None:
    """Many one-test conditions per example: each rule of the language gets exercised."""
    stored = store(repository, drawn)
    for leaf in leaves:
        for where in (leaf, Not(leaf)):
            found = repository.query("User", Query(where=where))
            expected = answer(stored, Query(where=where))
            assert ([doc["id"] for doc in found.documents], found.total) == expected, where


@PROPERTY
@given(drawn=st.lists(documents(), max_size=8), where=conditions(), loose=st.booleans())
def test_the_python_fallback_agrees_with_sql(
    repository: PostgresRepository, drawn: list[dict], where: Condition, loose: bool
) -> None:
    """``where`` as a superset (or absent) plus ``matches``: the same answer as SQL alone."""
    stored = store(repository, drawn)
    expected = answer(stored, Query(where=where))
    query = Query(
        matches=lambda document: holds(where, document),
        where=where if loose else None,
        exact=False,
        sort_key=lambda document: 0,  # a sort only Python can do: insertion order stays
    )
    assert not query.answerable_in_store

    found = repository.query("User", query)

    assert ([doc["id"] for doc in found.documents], found.total) == expected


# -- examples named for what they pin down ----------------------------------------------------


# Stored strings on each side of where an operand holds what no stored string can.
BOUNDARY_STRINGS = ["", "a", "A", "a\x01", "a\ud7ff", "a\ue000", "a\ue001", "ab", "b", "\ue000"]
UNSTORABLE_OPERANDS = ["\x00", "a\x00", "A\x00b", "\ud800", "a\udfff", "a\ud800b"]


@pytest.mark.parametrize("operand", UNSTORABLE_OPERANDS, ids=ascii)
def test_operands_no_stored_string_can_hold_compare_exactly(
    repository: PostgresRepository, operand: str
) -> None:
    """Every operator, folded or not, on a list or a single path, at each boundary."""
    stored = store(
        repository,
        [{"s": value, "m": [value, "zz"]} for value in BOUNDARY_STRINGS] + [{}],
    )
    for op in sorted(TEXT_OPERATORS):
        for fold in (False, True):
            for where in (Text(("s",), op, operand, fold, True), Text(("m",), op, operand, fold)):
                found = repository.query("User", Query(where=where))
                expected = answer(stored, Query(where=where))
                assert ([doc["id"] for doc in found.documents], found.total) == expected, where


def test_a_path_through_a_key_no_document_can_hold_has_no_value(
    repository: PostgresRepository,
) -> None:
    store(repository, [{"s": "a"}])

    def total(where: Condition) -> int:
        return repository.query("User", Query(where=where)).total

    assert total(Text(("n\x00",), "ne", "a")) == 1
    assert total(Text(("n\x00",), "eq", "a")) == 0
    assert total(Present(("n\x00",))) == 0
    assert total(Element(("n\x00",), All(()))) == 0


def test_like_metacharacters_in_an_operand_match_only_themselves(
    repository: PostgresRepository,
) -> None:
    store(repository, [{"s": "a%b"}, {"s": "axb"}, {"s": "a_b"}, {"s": "a\\b"}])

    for operand, expected in [("%", ["a%b"]), ("_", ["a_b"]), ("\\", ["a\\b"])]:
        found = repository.query("User", Query(where=Text(("s",), "co", operand)))
        assert [doc["s"] for doc in found.documents] == expected


def test_fold_compares_as_str_casefold_not_as_lower(repository: PostgresRepository) -> None:
    """ "Straße" folds to "strasse", which SQL's lower() would not give."""
    store(repository, [{"s": "STRASSE"}, {"s": "Straße"}, {"s": "strase"}])

    found = repository.query("User", Query(where=Text(("s",), "eq", "strasse", fold=True)))

    assert [doc["s"] for doc in found.documents] == ["STRASSE", "Straße"]


def test_order_is_by_code_point_with_missing_values_last(repository: PostgresRepository) -> None:
    store(repository, [{"s": "b"}, {"s": ""}, {"s": "B"}, {}, {"s": "a"}, {"s": 3}])

    ascending = repository.query("User", Query(order=Order(("s",))))
    descending = repository.query("User", Query(order=Order(("s",), descending=True)))

    assert [doc.get("s") for doc in ascending.documents] == ["B", "a", "b", "", None, 3]
    assert [doc.get("s") for doc in descending.documents] == ["", None, 3, "b", "a", "B"]


def test_a_page_past_the_end_still_counts_the_matches(repository: PostgresRepository) -> None:
    store(repository, [{"s": "a"}, {"s": "b"}, {"s": "c"}])

    past = repository.query("User", Query(where=Present(("s",)), offset=5, limit=2))
    counting = repository.query("User", Query(limit=0))

    assert (past.documents, past.total) == ([], 3)
    assert (counting.documents, counting.total) == ([], 3)


def test_keys_trim_the_documents_but_keep_id_and_meta(repository: PostgresRepository) -> None:
    store(repository, [{"s": "a", "o": {"x": "y"}, "m": [1]}])

    found = repository.query("User", Query(keys=frozenset({"s"})))

    assert set(found.documents[0]) == {"id", "meta", "s"}


@pytest.mark.parametrize(
    ("text", "escaped"), [("a%b", "a\\%b"), ("a_b", "a\\_b"), ("a\\b", "a\\\\b"), ("ab", "ab")]
)
def test_escape_like(text: str, escaped: str) -> None:
    assert escape_like(text) == escaped


def test_json_path_quotes_every_key() -> None:
    assert json_path(("a", 'q"u')) == '$."a"[*][*]."q\\"u"[*][*]'
