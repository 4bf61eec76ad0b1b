"""scim.queries: a SCIM filter and sortBy in the store's condition language.

The property the PostgreSQL store relies on: where the translation says *exact*, the
condition (:func:`storage.query.holds`) accepts exactly the documents the SCIM matcher
accepts; otherwise it accepts at least those. Likewise a translated order sorts as the
Python sort key does.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from scim import constants
from scim.definitions import GROUP_RESOURCE, USER_RESOURCE
from scim.errors import InvalidFilter
from scim.filter import (
    And,
    Compare,
    Filter,
    Not,
    Or,
    Present,
    ValuePathFilter,
    matcher,
    parse_filter,
)
from scim.pagination import sort_key
from scim.paths import AttrPath, parse_attr_path
from scim.queries import order, translate, wanted_keys
from storage import query as store
from storage.query import Found, Query, answer_in_python, holds

PROPERTY = settings(max_examples=400, deadline=None, database=None)
ENTERPRISE = constants.ENTERPRISE_USER

# Few, colliding values, so that comparisons often hold: case variants, a prefix of another,
# and characters whose case folding changes their length (ß -> ss).
WORDS = ["ann", "ANN", "Ann Lee", "an", "straße", "STRASSE", "ß", "", "zoë", "Zoë", "x@y.org"]
words = st.sampled_from(WORDS)
STAMPS = ["2026-11-26T10:54:52.123Z", "2026-11-26T10:54:53.000Z", "2027-01-01T00:00:00.000Z"]
MOMENTS = [
    "2026-11-26T10:54:52.123Z",
    "2026-11-26T11:54:52.123+01:00",
    "2026-11-26T10:54:52.5Z",
    "2026-11-26T10:54:52.123456Z",  # finer than stored: not translated
    "2026-11-26",
    "2026-11-26T10:54:53",
]


def maybe(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.none(), strategy)


emails = st.lists(
    st.fixed_dictionaries(
        {"value": maybe(words)},
        optional={"type": st.sampled_from(["work", "home", "WORK"]), "primary": st.booleans()},
    ),
    max_size=3,
)


@st.composite
def users(draw: st.DrawFn) -> dict:
    document: dict = {
        "schemas": [constants.USER],
        "id": draw(st.sampled_from(["a1", "b2", "c3"])),
        "userName": draw(words),
        "meta": {
            "resourceType": "User",
            "created": draw(st.sampled_from(STAMPS)),
            "lastModified": draw(st.sampled_from(STAMPS)),
        },
    }
    optional = {
        "displayName": maybe(words),
        "title": maybe(words),
        # Entra sends "True" and "False" as strings (entra-provisioning.md Q2).
        "active": st.one_of(st.booleans(), st.sampled_from(["True", "false", "FALSE", "yes"])),
        "emails": emails,
        "name": st.fixed_dictionaries(
            {}, optional={"givenName": maybe(words), "familyName": words}
        ),
        ENTERPRISE: st.fixed_dictionaries(
            {},
            optional={
                "department": maybe(words),
                "manager": st.fixed_dictionaries({}, optional={"value": words}),
            },
        ),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            document[key] = draw(strategy)
    return document


PATHS = [
    "userName",
    "USERNAME",
    "displayName",
    "title",
    "active",
    "emails",
    "emails.value",
    "emails.type",
    "name.givenName",
    "name",
    "id",
    "meta.lastModified",
    "meta.created",
    "noSuchThing",
    f"{ENTERPRISE}:department",
    f"{ENTERPRISE}:manager.value",
    f"{ENTERPRISE}:manager",
]
OPERATORS = ["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"]


def comparisons(paths: list[str]) -> st.SearchStrategy[Filter]:
    value = st.one_of(words, st.sampled_from(MOMENTS), st.none(), st.booleans(), st.just(42))
    return st.builds(
        Compare,
        st.sampled_from(paths).map(parse_attr_path),
        st.sampled_from(OPERATORS),
        value,
    )


filters: st.SearchStrategy[Filter] = st.recursive(
    st.one_of(
        comparisons(PATHS),
        st.builds(Present, st.sampled_from(PATHS).map(parse_attr_path)),
        st.builds(
            ValuePathFilter,
            st.just(AttrPath(None, "emails")),
            st.one_of(
                comparisons(["value", "type", "primary"]),
                st.builds(Present, st.sampled_from(["value", "type"]).map(parse_attr_path)),
            ),
        ),
    ),
    lambda inner: st.one_of(
        st.builds(And, inner, inner), st.builds(Or, inner, inner), st.builds(Not, inner)
    ),
    max_leaves=6,
)


@PROPERTY
@given(filters, st.lists(users(), min_size=1, max_size=6))
def test_an_exact_translation_selects_exactly_the_matches_else_a_superset(
    expr: Filter, documents: list[dict]
) -> None:
    try:
        matches = matcher(expr, USER_RESOURCE)
    except InvalidFilter:
        return  # refused before any store is asked
    condition, exact = translate(expr, USER_RESOURCE)
    for document in documents:
        matched = matches(document)
        if condition is None:
            assert not exact
        elif exact:
            assert holds(condition, document) == matched, (str(expr), condition, document)
        else:
            assert holds(condition, document) or not matched, (str(expr), condition, document)


@PROPERTY
@given(
    st.sampled_from(PATHS),
    st.booleans(),
    st.lists(users(), min_size=2, max_size=8),
)
def test_a_translated_order_sorts_as_the_python_key(
    path: str, ascending: bool, documents: list[dict]
) -> None:
    sort_by = parse_attr_path(path)
    key = sort_key(sort_by, USER_RESOURCE)
    translated = order(sort_by, USER_RESOURCE, ascending)
    if translated is None or key is None:
        return
    expected = sorted(documents, key=key, reverse=not ascending)
    assert _sorted_by_order(documents, translated) == expected


def _sorted_by_order(documents: list[dict], by: store.Order) -> list[dict]:
    """The order's stated meaning: strings by code point (folded if asked), others last when
    ascending and first when descending, ties in insertion order."""

    def value(document: dict) -> str | None:
        found = store.values_at(document, by.path)
        text = found[0] if found and isinstance(found[0], str) and found[0] else None
        return text.casefold() if text is not None and by.fold else text

    present = [doc for doc in documents if value(doc) is not None]
    absent = [doc for doc in documents if value(doc) is None]
    present.sort(key=value, reverse=by.descending)  # type: ignore[arg-type]
    return absent + present if by.descending else present + absent


def test_the_lookups_entra_makes_translate_exactly() -> None:
    for text, resource in [
        ('userName eq "ann"', USER_RESOURCE),
        ('externalId eq "e-1"', USER_RESOURCE),
        ('displayName eq "Sales"', GROUP_RESOURCE),
        ('userName co "an" and userName sw "a"', USER_RESOURCE),
        ("title pr", USER_RESOURCE),
        ("active eq false", USER_RESOURCE),
        ('active ne "True"', USER_RESOURCE),
        ('meta.lastModified gt "2026-11-26T10:54:52Z"', USER_RESOURCE),
    ]:
        condition, exact = translate(parse_filter(text), resource)
        assert condition is not None and exact, text


def test_an_untranslatable_term_still_narrows_an_and() -> None:
    finer_than_stored = 'meta.lastModified gt "2026-11-26T10:54:52.123456Z"'
    condition, exact = translate(
        parse_filter(f'userName eq "ann" and {finer_than_stored}'), USER_RESOURCE
    )

    assert not exact
    assert condition == store.All((store.Text(("userName",), "eq", "ann", fold=True, single=True),))


def test_answering_in_python_counts_before_cutting_the_page() -> None:
    documents = [{"id": str(n), "n": n} for n in range(10)]
    query = Query(matches=lambda d: d["n"] % 2 == 0, sort_key=lambda d: -d["n"], offset=1, limit=2)

    assert answer_in_python(documents, query) == Found([documents[6], documents[4]], 5)


def test_a_time_finer_than_the_stored_milliseconds_is_left_to_python() -> None:
    """Stored times have milliseconds: as text, .123Z >= .123456Z, though not in time."""
    stored = {"meta": {"lastModified": "2026-11-26T10:54:52.123Z"}}
    expr = parse_filter('meta.lastModified ge "2026-11-26T10:54:52.123456Z"')

    condition, exact = translate(expr, USER_RESOURCE)

    assert not matcher(expr, USER_RESOURCE)(stored)
    assert (condition, exact) == (None, False)


def test_the_keys_attributes_needs_are_its_top_level_keys_and_the_ever_present_ones() -> None:
    paths = [parse_attr_path(text) for text in ("userName", "name.givenName", "emails.value")]
    enterprise = [parse_attr_path(f"{ENTERPRISE}:manager.value")]

    assert wanted_keys(paths, USER_RESOURCE) == {
        "schemas",
        "id",
        "meta",
        "userName",
        "name",
        "emails",
    }
    assert wanted_keys(enterprise, USER_RESOURCE) == {"schemas", "id", "meta", ENTERPRISE}
    assert wanted_keys([parse_attr_path("noSuchThing")], USER_RESOURCE) is None


@PROPERTY
@given(
    st.sampled_from(["eq", "ne"]),
    st.sampled_from([True, False, "True", "false", "FALSE"]),
    st.lists(users(), min_size=1, max_size=6),
)
def test_a_boolean_comparison_translates_exactly(
    op: str, value: object, documents: list[dict]
) -> None:
    """active eq/ne with booleans and Entra's "True"/"False" strings, on both sides."""
    expr = Compare(parse_attr_path("active"), op, value)  # type: ignore[arg-type]
    matches = matcher(expr, USER_RESOURCE)
    condition, exact = translate(expr, USER_RESOURCE)

    assert exact and condition is not None
    for document in documents:
        assert holds(condition, document) == matches(document), (str(expr), document)
