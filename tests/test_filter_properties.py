"""Property tests: parsers raise only SCIM errors; rendering round-trips and keeps meaning;
a compiled matcher composes as the grammar says."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from scim import constants
from scim.definitions import USER_RESOURCE
from scim.errors import InvalidFilter, InvalidPath, ScimError
from scim.filter import (
    COMPARE_OPERATORS,
    And,
    Compare,
    Filter,
    Not,
    Or,
    Present,
    ValuePathFilter,
    element_matcher,
    matcher,
    matches,
    matches_element,
    parse_filter,
)
from scim.patch.path import PatchPath, parse_patch_path
from scim.paths import AttrPath, parse_attr_path, resolve, split_urn, values_reader

# Modest example counts keep the suite fast; no example database is written into the tree.
PROPERTY = settings(max_examples=300, deadline=None, database=None)

# Characters that reach the interesting corners of the grammar more often than arbitrary text.
FILTER_ALPHABET = ' \t()[]".:\\-_$0123456789eEaAndortpqwsgluc' + "\n\x00é"
filter_like_text = st.text(alphabet=FILTER_ALPHABET, max_size=60)
any_text = st.text(max_size=80)

# -- never anything but a ScimError ------------------------------------------------------------


@PROPERTY
@given(st.one_of(any_text, filter_like_text))
def test_parse_filter_returns_or_raises_invalid_filter(text: str) -> None:
    try:
        parse_filter(text)
    except InvalidFilter:
        pass


@PROPERTY
@given(st.one_of(any_text, filter_like_text))
def test_parse_attr_path_returns_or_raises_invalid_path(text: str) -> None:
    try:
        parse_attr_path(text)
    except InvalidPath:
        pass


@PROPERTY
@given(st.one_of(any_text, filter_like_text, filter_like_text.map(lambda t: f"emails[{t}]")))
def test_parse_patch_path_returns_or_raises_a_scim_error(text: str) -> None:
    try:
        parse_patch_path(text)
    except (InvalidPath, InvalidFilter):
        pass


@PROPERTY
@given(filter_like_text)
def test_parsed_filters_evaluate_or_raise_a_scim_error(text: str) -> None:
    try:
        matches(parse_filter(text), {"userName": "x", "emails": [{"value": "y"}]}, USER_RESOURCE)
    except ScimError:
        pass


# -- generated trees ---------------------------------------------------------------------------

# Filter keywords (eq, and, not, pr...) are not usable as attribute names in filters.
KEYWORDS = COMPARE_OPERATORS | {"and", "or", "not", "pr"}
names = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,8}|\$ref", fullmatch=True).filter(
    lambda name: name.casefold() not in KEYWORDS
)
schemas = st.sampled_from([None, constants.USER, constants.ENTERPRISE_USER, "urn:x:Y"])
attr_paths = st.builds(AttrPath, schemas, names, st.none() | names)
relative_paths = st.builds(AttrPath, st.none(), names, st.none())
values = st.one_of(
    st.text(max_size=12),
    st.booleans(),
    st.none(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
)


def _trees(leaf: st.SearchStrategy[Filter]) -> st.SearchStrategy[Filter]:
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.builds(And, inner, inner), st.builds(Or, inner, inner), st.builds(Not, inner)
        ),
        max_leaves=8,
    )


def _leaves(paths: st.SearchStrategy[AttrPath]) -> st.SearchStrategy[Filter]:
    return st.one_of(
        st.builds(Present, paths),
        st.builds(Compare, paths, st.sampled_from(sorted(COMPARE_OPERATORS)), values),
    )


element_filters = _trees(_leaves(relative_paths))
filters = _trees(
    st.one_of(
        _leaves(attr_paths),
        st.builds(ValuePathFilter, st.builds(AttrPath, schemas, names, st.none()), element_filters),
    )
)


@PROPERTY
@given(filters)
def test_rendered_filters_parse_and_render_stably(tree: Filter) -> None:
    """Every tree renders to valid text, and the parsed tree is a fixed point of render+parse."""
    parsed = parse_filter(str(tree), max_length=100_000)
    assert parse_filter(str(parsed), max_length=100_000) == parsed


@PROPERTY
@given(attr_paths)
def test_attr_paths_round_trip(path: AttrPath) -> None:
    assert parse_attr_path(str(path)) == path


@PROPERTY
@given(st.builds(PatchPath, st.builds(AttrPath, schemas, names, st.none()), element_filters, names))
def test_patch_paths_round_trip(path: PatchPath) -> None:
    parsed = parse_patch_path(str(path))
    assert parsed.attr == path.attr
    assert parsed.sub_attribute == path.sub_attribute
    assert parsed.value_filter == parse_filter(str(path.value_filter))


@PROPERTY
@given(st.sampled_from([constants.USER, constants.ENTERPRISE_USER]), names, st.randoms())
def test_split_urn_finds_the_schema_whatever_its_case(urn: str, rest: str, random) -> None:
    written = "".join(c.upper() if random.random() < 0.5 else c.lower() for c in urn)
    assert split_urn(f"{written}:{rest}", USER_RESOURCE) == (urn, rest)


# -- rendering keeps the meaning ---------------------------------------------------------------

user_paths = st.sampled_from(
    [
        AttrPath(None, "userName"),
        AttrPath(None, "title"),
        AttrPath(None, "name", "givenName"),
        AttrPath(None, "emails", "value"),
        AttrPath(None, "emails", "type"),
        AttrPath(None, "meta", "lastModified"),
        AttrPath(constants.ENTERPRISE_USER, "department"),
        AttrPath(None, "nickname2"),
    ]
)
words = st.sampled_from(["ann", "Ann", "work", "home", "a@x.org", "Sales", ""])
user_leaves = st.one_of(
    st.builds(Present, user_paths),
    st.builds(Compare, user_paths, st.sampled_from(["eq", "ne", "co", "sw", "ew"]), words),
    st.builds(
        Compare,
        st.just(AttrPath(None, "active")),
        st.sampled_from(["eq", "ne"]),
        st.booleans(),
    ),
    st.builds(
        ValuePathFilter,
        st.just(AttrPath(None, "emails")),
        _trees(st.builds(Compare, st.just(AttrPath(None, "type")), st.just("eq"), words)),
    ),
)
emails = st.lists(
    st.fixed_dictionaries({"value": words, "type": words, "primary": st.booleans()}), max_size=3
)
users = st.fixed_dictionaries(
    {
        "userName": words,
        "active": st.booleans(),
        "emails": emails,
        "meta": st.fixed_dictionaries(
            {"lastModified": st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat)}
        ),
        constants.ENTERPRISE_USER: st.fixed_dictionaries({"department": words}),
    },
    optional={"title": words, "name": st.fixed_dictionaries({"givenName": words})},
)


def _outcome(tree: Filter, user: dict) -> bool | str:
    """Whether ``tree`` matches ``user``, or "invalid" (a dateTime compared with a word)."""
    try:
        return matches(tree, user, USER_RESOURCE)
    except InvalidFilter:
        return "invalid"


@PROPERTY
@given(_trees(user_leaves), users)
def test_rendering_keeps_the_meaning(tree: Filter, user: dict) -> None:
    """Precedence and grouping survive render+parse: both trees agree on every document."""
    assert _outcome(parse_filter(str(tree)), user) == _outcome(tree, user)


# -- the compiled matcher composes as the grammar says -----------------------------------------

# Documents a client never sends but a matcher must still answer for: keys in another case,
# lists and objects where a single string belongs, numbers and Entra's "True" strings.
odd_values = st.recursive(
    st.one_of(words, st.booleans(), st.none(), st.integers(-2, 2), st.just("True")),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["value", "VALUE", "type", "primary"]), inner, max_size=3),
    ),
    max_leaves=5,
)
odd_users = st.dictionaries(
    st.sampled_from(["userName", "USERNAME", "title", "emails", "Emails", "name", "active"]),
    odd_values,
    max_size=5,
)
documents = st.one_of(users, odd_users)
EMAILS = AttrPath(None, "emails")
email_leaves = st.one_of(
    st.builds(Present, st.sampled_from(["value", "type", "primary"]).map(parse_attr_path)),
    st.builds(
        Compare,
        st.sampled_from(["value", "type", "primary", "display"]).map(parse_attr_path),
        st.sampled_from(sorted(COMPARE_OPERATORS)),
        st.one_of(words, st.booleans(), st.none(), st.just(1)),
    ),
)


@PROPERTY
@given(_trees(user_leaves), _trees(user_leaves), documents)
def test_a_compiled_matcher_composes_as_the_connectives_say(
    left: Filter, right: Filter, user: dict
) -> None:
    """``and``, ``or`` and ``not`` of two filters answer as Python's of each one's answer."""
    first, second = _outcome(left, user), _outcome(right, user)
    if "invalid" in (first, second):
        return
    assert _outcome(And(left, right), user) == (first and second)
    assert _outcome(Or(left, right), user) == (first or second)
    assert _outcome(Not(left), user) == (not first)


@PROPERTY
@given(_trees(email_leaves), documents)
def test_a_value_path_matches_when_some_element_does(expr: Filter, user: dict) -> None:
    """``emails[expr]`` holds when ``expr`` holds for one of the objects among the emails."""
    resolved = resolve(EMAILS, USER_RESOURCE)
    assert resolved is not None
    try:
        element_test = element_matcher(expr, resolved.attribute)
    except InvalidFilter:
        return
    elements = [e for e in values_reader(resolved)(user) if isinstance(e, dict)]
    expected = any(element_test(element) for element in elements)
    assert matcher(ValuePathFilter(EMAILS, expr), USER_RESOURCE)(user) is expected
    assert all(
        matches_element(expr, element, resolved.attribute) is element_test(element)
        for element in elements
    )


@PROPERTY
@given(_trees(user_leaves), st.lists(documents, min_size=2, max_size=5))
def test_a_matcher_built_once_answers_each_document_as_a_fresh_one(
    tree: Filter, batch: list[dict]
) -> None:
    """Nothing read from one document is kept for the next (the service tests thousands)."""
    try:
        test = matcher(tree, USER_RESOURCE)
    except InvalidFilter:
        return
    assert [test(user) for user in batch] == [matches(tree, user, USER_RESOURCE) for user in batch]
