"""Filters (RFC 7644 §3.4.2.2): parsing, errors with positions, rendering and evaluation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from scim import constants
from scim.definitions import (
    BINARY,
    COMPLEX,
    DECIMAL,
    GROUP_RESOURCE,
    INTEGER,
    NEVER,
    USER_RESOURCE,
    USER_SCHEMA,
    AttributeDef,
    ResourceTypeDef,
    SchemaDef,
)
from scim.errors import InvalidFilter
from scim.filter import (
    And,
    Compare,
    Filter,
    Not,
    Or,
    Present,
    ValuePathFilter,
    element_matcher,
    equality_terms,
    matcher,
    matches,
    matches_element,
    parse_filter,
    validate,
)
from scim.paths import AttrPath

ENTERPRISE = constants.ENTERPRISE_USER
BJENSEN_ID = "2819c223-7f76-453a-919d-413861904646"
MANAGER_ID = "26118915-6090-4610-87e4-49d8ca9f808d"


def path(text: str) -> AttrPath:
    """A path without URN, as the parser builds it: ``path("name.givenName")``."""
    attribute, _, sub = text.partition(".")
    return AttrPath(None, attribute, sub or None)


def eq(attribute: str, value: object) -> Compare:
    return Compare(path(attribute), "eq", value)  # type: ignore[arg-type]


@pytest.fixture
def bjensen() -> dict:
    """The RFC 7643 §8.2 user, trimmed, in the project's document layout."""
    return {
        "schemas": [constants.USER, ENTERPRISE],
        "id": BJENSEN_ID,
        "externalId": "bjensen-EXT",
        "userName": "bjensen",
        "name": {"familyName": "Jensen", "givenName": "Barbara", "middleName": None},
        "displayName": "Babs Jensen",
        "title": "Tour Guide",
        "userType": "Employee",
        "active": True,
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": True},
            {"value": "babs@jensen.org", "type": "home"},
        ],
        "ims": [{"value": "someaimhandle", "type": "aim"}],
        "roles": [{"value": "admin", "primary": True}],
        "addresses": [{"locality": "Hollywood", "type": "work"}],
        "meta": {
            "resourceType": "User",
            "created": "2010-01-23T04:56:22Z",
            "lastModified": "2011-05-13T04:42:34Z",
        },
        ENTERPRISE: {
            "employeeNumber": "701984",
            "department": "Tour Operations",
            "manager": {"value": MANAGER_ID},
        },
    }


@pytest.fixture
def group() -> dict:
    return {
        "schemas": [constants.GROUP],
        "id": "e9e30dba-f08f-4109-8486-d5c6a331660a",
        "displayName": "Tour Guides",
        "members": [{"value": BJENSEN_ID, "display": "Babs Jensen", "type": "User"}],
    }


# -- parsing: RFC 7644 §3.4.2.2 Figure 2 -------------------------------------------------------

EMAILS_CO = Or(
    Compare(path("emails"), "co", "example.com"),
    Compare(path("emails.value"), "co", "example.org"),
)
FIGURE_2 = [
    pytest.param('userName eq "bjensen"', eq("userName", "bjensen"), True, id="fig2-eq"),
    pytest.param(
        'name.familyName co "O\'Malley"',
        Compare(path("name.familyName"), "co", "O'Malley"),
        False,
        id="fig2-co-sub-attribute",
    ),
    pytest.param('userName sw "J"', Compare(path("userName"), "sw", "J"), False, id="fig2-sw"),
    pytest.param(
        'urn:ietf:params:scim:schemas:core:2.0:User:userName sw "B"',
        Compare(AttrPath(constants.USER, "userName"), "sw", "B"),
        True,
        id="fig2-sw-urn",
    ),
    pytest.param("title pr", Present(path("title")), True, id="fig2-pr"),
    pytest.param(
        'meta.lastModified gt "2011-05-13T04:42:34Z"',
        Compare(path("meta.lastModified"), "gt", "2011-05-13T04:42:34Z"),
        False,
        id="fig2-gt-datetime",
    ),
    pytest.param(
        'meta.lastModified ge "2011-05-13T04:42:34Z"',
        Compare(path("meta.lastModified"), "ge", "2011-05-13T04:42:34Z"),
        True,
        id="fig2-ge-datetime",
    ),
    pytest.param(
        'meta.lastModified lt "2011-05-13T04:42:34Z"',
        Compare(path("meta.lastModified"), "lt", "2011-05-13T04:42:34Z"),
        False,
        id="fig2-lt-datetime",
    ),
    pytest.param(
        'meta.lastModified le "2011-05-13T04:42:34Z"',
        Compare(path("meta.lastModified"), "le", "2011-05-13T04:42:34Z"),
        True,
        id="fig2-le-datetime",
    ),
    pytest.param(
        'title pr and userType eq "Employee"',
        And(Present(path("title")), eq("userType", "Employee")),
        True,
        id="fig2-and",
    ),
    pytest.param(
        'title pr or userType eq "Intern"',
        Or(Present(path("title")), eq("userType", "Intern")),
        True,
        id="fig2-or",
    ),
    pytest.param(
        'schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"',
        eq("schemas", ENTERPRISE),
        True,
        id="fig2-schemas",
    ),
    pytest.param(
        'userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")',
        And(eq("userType", "Employee"), EMAILS_CO),
        True,
        id="fig2-and-grouped-or",
    ),
    pytest.param(
        'userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")',
        And(Compare(path("userType"), "ne", "Employee"), Not(EMAILS_CO)),
        False,
        id="fig2-and-not",
    ),
    pytest.param(
        'userType eq "Employee" and (emails.type eq "work")',
        And(eq("userType", "Employee"), eq("emails.type", "work")),
        True,
        id="fig2-and-parenthesised-single",
    ),
    pytest.param(
        'userType eq "Employee" and emails[type eq "work" and value co "@example.com"]',
        And(
            eq("userType", "Employee"),
            ValuePathFilter(
                path("emails"),
                And(eq("type", "work"), Compare(path("value"), "co", "@example.com")),
            ),
        ),
        True,
        id="fig2-value-path",
    ),
    pytest.param(
        'emails[type eq "work" and value co "@example.com"] or '
        'ims[type eq "xmpp" and value co "@foo.com"]',
        Or(
            ValuePathFilter(
                path("emails"),
                And(eq("type", "work"), Compare(path("value"), "co", "@example.com")),
            ),
            ValuePathFilter(
                path("ims"), And(eq("type", "xmpp"), Compare(path("value"), "co", "@foo.com"))
            ),
        ),
        True,
        id="fig2-value-paths-or",
    ),
]


@pytest.mark.parametrize(("text", "tree", "_matches"), FIGURE_2)
def test_rfc_figure_2_parses(text: str, tree: Filter, _matches: bool) -> None:
    assert parse_filter(text) == tree


@pytest.mark.parametrize(("text", "tree", "_matches"), FIGURE_2)
def test_rfc_figure_2_renders_back_to_the_same_tree(
    text: str, tree: Filter, _matches: bool
) -> None:
    assert parse_filter(str(tree)) == tree


@pytest.mark.parametrize(("text", "_tree", "expected"), FIGURE_2)
def test_rfc_figure_2_evaluates_against_bjensen(
    bjensen: dict, text: str, _tree: Filter, expected: bool
) -> None:
    assert matches(parse_filter(text), bjensen, USER_RESOURCE) is expected


# -- parsing: grammar --------------------------------------------------------------------------

A, B, C, D = (Present(path(name)) for name in "abcd")


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        pytest.param("a pr or b pr and c pr", Or(A, And(B, C)), id="and-binds-tighter-than-or"),
        pytest.param("a pr and b pr or c pr", Or(And(A, B), C), id="and-first-then-or"),
        pytest.param("(a pr or b pr) and c pr", And(Or(A, B), C), id="parentheses-group"),
        pytest.param("not (a pr) and b pr", And(Not(A), B), id="not-binds-tightest"),
        pytest.param("not(a pr)", Not(A), id="not-without-space"),
        pytest.param("a pr and b pr and c pr", And(And(A, B), C), id="and-chain"),
        pytest.param("(a pr and b pr) and c pr", And(And(A, B), C), id="and-is-associative"),
        pytest.param("((a pr))", A, id="redundant-parentheses"),
        pytest.param(
            "a pr or b pr or c pr or d pr", Or(Or(A, B), Or(C, D)), id="long-chains-balance"
        ),
        pytest.param(
            'userName EQ "x" AND Title PR', And(eq("userName", "x"), Present(path("Title")))
        ),
        pytest.param("NOT (a pr) Or b Pr", Or(Not(A), B), id="keywords-any-case"),
        pytest.param(
            'userName  eq\t"x"   and\t\tb pr', And(eq("userName", "x"), B), id="spaces-and-tabs"
        ),
        pytest.param(
            'emails[type eq "work"].value eq "a@x"',
            ValuePathFilter(path("emails"), And(eq("type", "work"), eq("value", "a@x"))),
            id="entra-a2-value-path-with-sub-attribute",
        ),
        pytest.param(
            'emails[type eq "work" or (type eq "home" and not (primary eq true))]',
            ValuePathFilter(
                path("emails"),
                Or(eq("type", "work"), And(eq("type", "home"), Not(eq("primary", True)))),
            ),
            id="value-path-with-nested-logic",
        ),
        pytest.param(
            f'{ENTERPRISE}:department eq "Sales"',
            Compare(AttrPath(ENTERPRISE, "department"), "eq", "Sales"),
            id="extension-urn-path",
        ),
        pytest.param(
            f"{ENTERPRISE}:manager.value pr",
            Present(AttrPath(ENTERPRISE, "manager", "value")),
            id="extension-urn-path-with-sub",
        ),
    ],
)
def test_grammar(text: str, tree: Filter) -> None:
    assert parse_filter(text) == tree


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        pytest.param('"bjensen"', "bjensen", id="string"),
        pytest.param(r'"say \"hi\" \\ \u00e9\n"', 'say "hi" \\ é\n', id="json-escapes"),
        pytest.param('"true"', "true", id="quoted-true-is-a-string"),
        pytest.param("true", True, id="true"),
        pytest.param("FALSE", False, id="false-any-case"),
        pytest.param("null", None, id="null"),
        pytest.param("42", 42, id="integer"),
        pytest.param("-7", -7, id="negative"),
        pytest.param("2.5", 2.5, id="decimal"),
        pytest.param("1e3", 1000.0, id="exponent"),
        pytest.param("Employee", "Employee", id="entra-q24-bare-word"),
        pytest.param("example.com", "example.com", id="entra-q24-bare-domain"),
        pytest.param(
            "54D382A4-2050-4C03-94D1-E769F1D15682",
            "54D382A4-2050-4C03-94D1-E769F1D15682",
            id="entra-a17-bare-guid",
        ),
        pytest.param("0123", "0123", id="leading-zero-is-not-a-number"),
    ],
)
def test_comparison_values(literal: str, value: object) -> None:
    expression = parse_filter(f"userName eq {literal}")
    assert isinstance(expression, Compare)
    assert expression.value == value
    assert type(expression.value) is type(value)


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        pytest.param("", "filter: the filter is empty", id="empty"),
        pytest.param("userName eq ", "expected a value after 'eq' at position 13"),
        pytest.param("userName eq and", "expected a value after 'eq' at position 13"),
        pytest.param("userName eq )", "expected a value after 'eq' at position 13"),
        pytest.param("userName", "after 'userName', found the end of the filter at position 9"),
        pytest.param('userName equals "x"', "found 'equals' at position 10"),
        pytest.param('userName eq "x" )', "')' without a matching '(' at position 17"),
        pytest.param(
            '(userName eq "x"',
            "expected ')' to close the '(' at position 1, found the end of the filter "
            "at position 17",
        ),
        pytest.param("not userName pr", "expected '(' after 'not', found 'userName' at position 5"),
        pytest.param('userName eq "x', "unterminated string starting at position 13"),
        pytest.param(r'userName eq "\q"', r"invalid \escape at position 14"),
        pytest.param('userName eq "x" title pr', "found 'title' at position 17"),
        pytest.param("and title pr", "expected an attribute path, found 'and' at position 1"),
        pytest.param("title pr and", "found the end of the filter at position 13"),
        pytest.param("title pr and )", "expected an attribute path, found ')' at position 14"),
        pytest.param(
            'emails[type eq "work"',
            "expected ']' to close the '[' at position 7, found the end of the filter "
            "at position 22",
        ),
        pytest.param('emails[type eq "work"] pr', "found 'pr' at position 24"),
        pytest.param("emails[type[x eq 1]]", "cannot contain another '[' at position 12"),
        pytest.param('name.givenName[x eq "y"]', "must follow a multi-valued attribute"),
        pytest.param('emails[type eq "x"].a.b eq 1', "at position 22"),
        pytest.param(
            "name..givenName pr", "found '.' in attribute path 'name..givenName' at position 6"
        ),
        pytest.param('"userName" eq "x"', "expected an attribute path, found '\"userName\"'"),
        pytest.param('userName eq "x"\n', "unexpected character '\\n'"),
        pytest.param("userName eq 1e999", "number is out of range at position 13"),
        pytest.param("userName eq " + "9" * 1001, "number has more than 1000 digits"),
    ],
)
def test_parse_errors_say_what_and_where(text: str, detail: str) -> None:
    with pytest.raises(InvalidFilter) as raised:
        parse_filter(text)
    assert detail in raised.value.detail
    assert raised.value.detail.startswith("filter: ")


def test_filter_longer_than_max_length_is_refused() -> None:
    text = 'userName eq "' + "x" * 5000 + '"'
    with pytest.raises(InvalidFilter, match="longer than 4096 characters"):
        parse_filter(text)
    assert parse_filter(text, max_length=6000) == eq("userName", "x" * 5000)


@pytest.mark.parametrize(
    ("opening", "closing"),
    [pytest.param("(", ")", id="parentheses"), pytest.param("not (", ")", id="not")],
)
def test_nesting_deeper_than_max_depth_is_refused(opening: str, closing: str) -> None:
    assert parse_filter(opening * 32 + "a pr" + closing * 32) is not None
    with pytest.raises(InvalidFilter, match="nested deeper than 32 levels"):
        parse_filter(opening * 33 + "a pr" + closing * 33)
    with pytest.raises(InvalidFilter, match="nested deeper than 3 levels"):
        parse_filter(opening * 4 + "a pr" + closing * 4, max_depth=3)


def test_absurd_max_depth_still_never_raises_recursion_error() -> None:
    text = "(" * 20000 + "a pr" + ")" * 20000
    with pytest.raises(InvalidFilter, match="nested too deeply"):
        parse_filter(text, max_length=10**6, max_depth=10**6)


def test_a_long_chain_stays_shallow_enough_to_compare_and_hash() -> None:
    text = " or ".join(['userName eq "x"'] * 2000)
    tree = parse_filter(text, max_length=10**6, max_terms=10**6)
    assert tree == parse_filter(str(tree), max_length=10**6, max_terms=10**6)
    assert isinstance(hash(tree), int)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(" or ".join(['title co "x"'] * 33), id="or-chain"),
        pytest.param(" and ".join(["title pr"] * 33), id="and-chain"),
        pytest.param(" or ".join(['emails[type eq "w" and value co "x"]'] * 17), id="value-paths"),
    ],
)
def test_a_filter_of_more_than_32_comparisons_is_invalid(text: str) -> None:
    """Each comparison is tested on every resource a filter reads: 240 or-ed ones on 10,000
    users held the embedded store's only thread for 16 s. 4,096 characters hold ~250."""
    assert len(text) < 4096
    with pytest.raises(InvalidFilter, match="more than 32 comparisons"):
        parse_filter(text)


def test_a_filter_of_32_comparisons_is_parsed() -> None:
    parse_filter(" or ".join(['title co "x"'] * 16 + ['emails[type eq "w" and value pr]'] * 8))


def test_filter_that_is_not_a_string_is_invalid() -> None:
    """A SearchRequest body (RFC 7644 §3.4.3) can carry any JSON value as filter."""
    with pytest.raises(InvalidFilter, match="must be a string"):
        parse_filter(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "rendered"),
    [
        pytest.param("name.FamilyName eq Employee", 'name.FamilyName eq "Employee"'),
        pytest.param("a pr and (b pr or c pr)", "a pr and (b pr or c pr)"),
        pytest.param("(a pr and b pr) or c pr", "a pr and b pr or c pr"),
        pytest.param("not ((a pr))", "not (a pr)"),
        pytest.param('x eq "é\\"\\u0001"', 'x eq "é\\"\\u0001"'),
        pytest.param("x eq 2.50", "x eq 2.5"),
        pytest.param('emails[type eq "w"].value pr', 'emails[type eq "w" and value pr]'),
    ],
)
def test_rendering_is_canonical_filter_text(text: str, rendered: str) -> None:
    assert str(parse_filter(text)) == rendered


# -- evaluation --------------------------------------------------------------------------------


def _matches(text: str, document: dict) -> bool:
    return matches(parse_filter(text), document, USER_RESOURCE)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param('userName eq "BJENSEN"', True, id="entra-q10-userName-ignores-case"),
        pytest.param('USERNAME eq "bjensen"', True, id="entra-q24-attribute-name-any-case"),
        pytest.param('displayName eq "babs jensen"', True, id="displayName-ignores-case"),
        pytest.param(f'id eq "{BJENSEN_ID}"', True, id="id-exact"),
        pytest.param(f'id eq "{BJENSEN_ID.upper()}"', False, id="id-is-case-exact"),
        pytest.param('externalId eq "bjensen-ext"', False, id="externalId-is-case-exact"),
        pytest.param('externalId eq "bjensen-EXT"', True, id="externalId-exact"),
        pytest.param('name.givenName co "ARB"', True, id="co-ignores-case"),
        pytest.param('name.givenName sw "bar"', True, id="sw"),
        pytest.param('name.givenName ew "RA"', True, id="ew"),
        pytest.param('name.givenName ne "barbara"', False, id="ne-ignores-case"),
        pytest.param('name.givenName gt "Alice"', True, id="gt-lexicographic"),
        pytest.param('name.givenName lt "barbara"', False, id="lt-folded"),
        pytest.param('name.givenName le "BARBARA"', True, id="le-folded"),
        pytest.param("name.FamilyName eq jensen", True, id="entra-q24-bare-word"),
        pytest.param("emails.Value co example.com", True, id="entra-q24-bare-domain"),
    ],
)
def test_strings_compare_by_the_attributes_case_exactness(
    bjensen: dict, text: str, expected: bool
) -> None:
    assert _matches(text, bjensen) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param('nickname2 eq "x"', False, id="unknown-eq"),
        pytest.param('nickname2 ne "x"', False, id="unknown-ne"),
        pytest.param("nickname2 pr", False, id="unknown-pr"),
        pytest.param("name.nope pr", False, id="unknown-sub-attribute"),
        pytest.param('department eq "Tour Operations"', False, id="extension-needs-urn"),
        pytest.param('urn:example:other:2.0:User:department eq "x"', False, id="unknown-urn"),
        pytest.param("not (nickname2 pr)", True, id="not-of-unknown"),
        pytest.param('nickName eq "x"', False, id="absent-eq"),
        pytest.param('nickName ne "x"', True, id="absent-ne-nothing-is-equal"),
        pytest.param("nickName pr", False, id="absent-pr"),
        pytest.param("nickName eq null", True, id="absent-eq-null"),
        pytest.param("nickName ne null", False, id="absent-ne-null"),
        pytest.param("title eq null", False, id="present-eq-null"),
        pytest.param("title ne null", True, id="present-ne-null"),
        pytest.param("name.middleName pr", False, id="null-is-not-present"),
    ],
)
def test_unknown_and_absent_attributes(bjensen: dict, text: str, expected: bool) -> None:
    assert _matches(text, bjensen) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("", False, id="empty-string"),
        pytest.param([], False, id="empty-list"),
        pytest.param({}, False, id="empty-object"),
        pytest.param({"givenName": None, "familyName": ""}, False, id="object-of-empties"),
        pytest.param({"givenName": "Ann"}, True, id="object"),
        pytest.param("x", True, id="string"),
    ],
)
def test_present_means_a_non_empty_value(value: object, expected: bool) -> None:
    attribute = "name" if isinstance(value, dict) else "nickName"
    assert _matches(f"{attribute} pr", {attribute: value}) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param('meta.lastModified eq "2011-05-13T06:42:34+02:00"', True, id="offset"),
        pytest.param('meta.lastModified gt "2011-05-13T04:42:33.999Z"', True, id="fraction"),
        pytest.param('meta.lastModified lt "2011-05-13T04:42:34"', False, id="naive-is-utc"),
        pytest.param('meta.lastModified ge "2011-05-13"', True, id="date-only"),
        pytest.param('meta.created lt "2011-05-13T04:42:34Z"', True, id="created"),
        pytest.param('meta.created sw "2010-01"', True, id="sw-compares-text"),
        pytest.param('meta.lastModified ne "2011-05-13T04:42:34Z"', False, id="ne"),
    ],
)
def test_datetimes_compare_chronologically(bjensen: dict, text: str, expected: bool) -> None:
    assert _matches(text, bjensen) is expected


def test_stored_datetime_objects_compare_too() -> None:
    document = {"meta": {"lastModified": datetime(2011, 5, 13, 4, 42, 34, tzinfo=UTC)}}
    assert _matches('meta.lastModified eq "2011-05-13T04:42:34Z"', document)


def test_unparseable_stored_datetime_matches_nothing() -> None:
    document = {"meta": {"lastModified": "yesterday"}}
    assert not _matches('meta.lastModified lt "2011-05-13T04:42:34Z"', document)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("active eq true", True, id="eq-true"),
        pytest.param("active eq false", False, id="eq-false"),
        pytest.param("active ne false", True, id="ne"),
        pytest.param('active eq "True"', True, id="entra-q15-string-literal"),
        pytest.param('active eq "FALSE"', False, id="string-literal-any-case"),
        pytest.param('roles[primary eq "True"]', True, id="entra-q15-roles-primary"),
        pytest.param("emails[primary eq false]", False, id="absent-primary-is-not-false"),
    ],
)
def test_booleans_compare_with_eq_and_ne(bjensen: dict, text: str, expected: bool) -> None:
    assert _matches(text, bjensen) is expected


def test_stored_boolean_string_is_read_as_boolean() -> None:
    """Entra Q2: older data may hold "False"; a filter still finds it."""
    assert _matches("active eq false", {"active": "False"})


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        pytest.param("active gt true", "'active gt': a boolean compares with eq or ne only"),
        pytest.param('active co "t"', "a boolean compares with eq or ne only"),
        pytest.param("active eq 1", "'active eq' 1: expected true or false"),
        pytest.param('active eq "yes"', "expected true or false"),
        pytest.param("roles[primary ge true]", "a boolean compares with eq or ne only"),
        pytest.param('meta.lastModified gt "last week"', "expected an RFC 3339 dateTime"),
        pytest.param("meta.lastModified gt 2011", "expected an RFC 3339 dateTime"),
        pytest.param('name eq "Barbara"', "compares the complex attribute 'name'"),
        pytest.param('emails gt "a"', "compares the complex attribute 'emails'"),
        pytest.param("title gt null", "null compares with eq or ne only"),
        pytest.param('userName[value eq "x"]', "'userName[...]' needs a complex attribute"),
    ],
)
def test_comparisons_the_type_does_not_allow_are_invalid_filter(text: str, detail: str) -> None:
    """Raised whatever the data: on an empty document and by validate() with none at all."""
    expression = parse_filter(text)
    with pytest.raises(InvalidFilter) as raised:
        validate(expression, USER_RESOURCE)
    assert detail in raised.value.detail
    with pytest.raises(InvalidFilter):
        matches(expression, {}, USER_RESOURCE)


def test_type_errors_are_raised_even_behind_a_false_conjunct(bjensen: dict) -> None:
    with pytest.raises(InvalidFilter):
        _matches('userName eq "nobody" and active gt true', bjensen)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param('emails.value eq "babs@jensen.org"', True, id="any-value-matches"),
        pytest.param('emails.type eq "home"', True, id="any-type-matches"),
        pytest.param('emails.value ne "bjensen@example.com"', True, id="ne-any-other-value"),
        pytest.param('emails co "@jensen.org"', True, id="complex-compares-its-values"),
        pytest.param('emails eq "BJENSEN@example.com"', True, id="complex-eq-its-values"),
        pytest.param("emails pr", True, id="complex-pr"),
        pytest.param("phoneNumbers pr", False, id="absent-multi-valued-pr"),
        pytest.param('addresses.locality eq "hollywood"', True, id="addresses"),
        pytest.param(
            'emails.type eq "home" and emails.value co "@example.com"',
            True,
            id="separate-terms-may-match-different-elements",
        ),
        pytest.param(
            'emails[type eq "home" and value co "@example.com"]',
            False,
            id="value-path-terms-must-match-one-element",
        ),
        pytest.param('emails[type eq "work" and value co "@example.com"]', True, id="value-path"),
        pytest.param(
            'emails[type eq "work"].value eq "bjensen@example.com"', True, id="entra-a2-match"
        ),
        pytest.param(
            'emails[type eq "home"].value eq "bjensen@example.com"', False, id="entra-a2-miss"
        ),
        pytest.param('emails[not (type eq "work")]', True, id="value-path-not"),
        pytest.param('phoneNumbers[type eq "work"]', False, id="value-path-absent"),
        pytest.param('emails[nope eq "x"]', False, id="value-path-unknown-sub-attribute"),
        pytest.param('nope[type eq "x"]', False, id="value-path-unknown-attribute"),
    ],
)
def test_multi_valued_attributes_match_if_any_value_does(
    bjensen: dict, text: str, expected: bool
) -> None:
    assert _matches(text, bjensen) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(f'{ENTERPRISE}:department eq "Tour Operations"', True, id="department"),
        pytest.param(f'{ENTERPRISE.upper()}:DEPARTMENT eq "tour operations"', True, id="any-case"),
        pytest.param(f'{ENTERPRISE}:department eq "Sales"', False, id="department-miss"),
        pytest.param(f'{ENTERPRISE}:manager.value eq "{MANAGER_ID}"', True, id="manager-value"),
        pytest.param(f'{ENTERPRISE}:manager eq "{MANAGER_ID}"', True, id="manager-compares-value"),
        pytest.param(f"{ENTERPRISE}:employeeNumber eq 701984", True, id="bare-number-as-text"),
        pytest.param(f"{ENTERPRISE}:costCenter pr", False, id="absent"),
        pytest.param(f"{ENTERPRISE}.department pr", True, id="entra-q6-legacy-dot-form"),
    ],
)
def test_extension_attributes_by_urn_path(bjensen: dict, text: str, expected: bool) -> None:
    assert _matches(text, bjensen) is expected


def test_entra_legacy_manager_query(bjensen: dict) -> None:
    """Entra A17 (legacy): bare GUIDs; `manager` needs its URN here, so only the URN form hits."""
    legacy = f"id eq {BJENSEN_ID} and manager eq {MANAGER_ID}"
    prefixed = f"id eq {BJENSEN_ID} and {ENTERPRISE}:manager eq {MANAGER_ID}"
    assert not _matches(legacy, bjensen)
    assert _matches(prefixed, bjensen)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param('displayName eq "TOUR GUIDES"', True, id="entra-a10-displayName-any-case"),
        pytest.param(f'members.value eq "{BJENSEN_ID}"', True, id="members-value"),
        pytest.param(f'members.value eq "{BJENSEN_ID.upper()}"', False, id="members-case-exact"),
        pytest.param(f'members[value eq "{BJENSEN_ID}"]', True, id="members-value-path"),
        pytest.param('members[display co "babs"]', True, id="members-display-ignores-case"),
        pytest.param('userName eq "bjensen"', False, id="user-attribute-on-group"),
    ],
)
def test_group_filters(group: dict, text: str, expected: bool) -> None:
    assert matches(parse_filter(text), group, GROUP_RESOURCE) is expected


def _measured_resource() -> ResourceTypeDef:
    """A resource with integer, decimal and binary attributes, which User and Group lack."""
    schema = SchemaDef(
        "urn:example:Measured",
        "Measured",
        "",
        (
            AttributeDef("age", type=INTEGER),
            AttributeDef("score", type=DECIMAL),
            AttributeDef("photo", type=BINARY, case_exact=True),
        ),
    )
    return ResourceTypeDef("Measured", "/Measured", "", schema)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("age gt 30", True, id="integer-gt"),
        pytest.param("age eq 41.0", True, id="integer-eq-decimal"),
        pytest.param("age le 40", False, id="integer-le"),
        pytest.param("score lt 0.75", True, id="decimal-lt"),
        pytest.param("score ne 0.5", False, id="decimal-ne"),
        pytest.param('photo eq "QUJD"', True, id="binary-eq"),
        pytest.param('photo eq "qujd"', False, id="binary-case-exact"),
    ],
)
def test_numbers_compare_numerically(text: str, expected: bool) -> None:
    document = {"age": 41, "score": 0.5, "photo": "QUJD"}
    assert matches(parse_filter(text), document, _measured_resource()) is expected


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        pytest.param('age eq "41"', "expected a number"),
        pytest.param("age co 4", "expected a number"),
        pytest.param('photo gt "A"', "binary values cannot be ordered"),
    ],
)
def test_number_and_binary_misuse_is_invalid_filter(text: str, detail: str) -> None:
    with pytest.raises(InvalidFilter, match=detail):
        validate(parse_filter(text), _measured_resource())


# -- matches_element, element_matcher --------------------------------------------------------------

EMAILS = USER_SCHEMA.attribute("emails")
WORK_EMAIL = {"value": "Ann@Example.com", "type": "work", "primary": True}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param('type eq "work"', True, id="type"),
        pytest.param('TYPE eq "WORK"', True, id="any-case"),
        pytest.param('value eq "ann@example.com"', True, id="value-ignores-case"),
        pytest.param('primary eq "True"', True, id="entra-q15-primary-string"),
        pytest.param('type eq "work" and not (primary eq false)', True, id="logic"),
        pytest.param('type eq "home" or value ew ".org"', False, id="or-miss"),
        pytest.param("display pr", False, id="absent"),
        pytest.param('nope eq "x"', False, id="unknown-sub-attribute"),
        pytest.param('emails.type eq "work"', False, id="path-must-be-relative"),
    ],
)
def test_matches_element_evaluates_paths_relative_to_one_element(text: str, expected: bool) -> None:
    assert EMAILS is not None
    assert matches_element(parse_filter(text), WORK_EMAIL, EMAILS) is expected


def test_matches_element_has_no_nested_value_paths() -> None:
    """The parser refuses them; a tree built by hand simply matches nothing."""
    assert EMAILS is not None
    nested = ValuePathFilter(path("type"), eq("value", "x"))
    assert matches_element(nested, {"type": {"value": "x"}}, EMAILS) is False


def test_matches_element_refuses_what_the_sub_attribute_type_does_not_allow() -> None:
    assert EMAILS is not None
    with pytest.raises(InvalidFilter, match="a boolean compares with eq or ne only"):
        matches_element(parse_filter("primary gt true"), {}, EMAILS)


def test_element_matcher_checks_the_filter_once_before_any_element() -> None:
    """The test a PATCH or a member removal builds once for all the elements it scans."""
    assert EMAILS is not None
    with pytest.raises(InvalidFilter, match="a boolean compares with eq or ne only"):
        element_matcher(parse_filter("primary gt true"), EMAILS)
    work = element_matcher(parse_filter('type eq "work" and value ew "@example.com"'), EMAILS)
    home = {"value": "ann@example.com", "type": "home"}
    assert [work(element) for element in (WORK_EMAIL, home, {})] == [True, False, False]


# -- equality_terms ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "terms"),
    [
        pytest.param('userName eq "Ann"', [("userName", "Ann")], id="entra-a2-userName"),
        pytest.param('USERNAME eq "Ann"', [("userName", "Ann")], id="canonical-name"),
        pytest.param('externalId eq "e-1"', [("externalId", "e-1")], id="externalId"),
        pytest.param('id eq "i-1"', [("id", "i-1")], id="id"),
        pytest.param(f'{constants.USER}:userName eq "A"', [("userName", "A")], id="core-urn"),
        pytest.param(
            'userName eq "a" and (externalId eq "b" and id eq "c")',
            [("userName", "a"), ("externalId", "b"), ("id", "c")],
            id="conjuncts-in-order",
        ),
        pytest.param(
            'userName eq "a" and (externalId eq "b" or title pr)',
            [("userName", "a")],
            id="only-the-conjuncts",
        ),
        pytest.param(
            'emails[type eq "work"] and userName eq "a"',
            [("userName", "a")],
            id="beside-value-path",
        ),
        pytest.param('userName eq "a" or externalId eq "b"', [], id="or-gives-none"),
        pytest.param('not (userName eq "a")', [], id="not-gives-none"),
        pytest.param('userName ne "a"', [], id="ne-gives-none"),
        pytest.param("userName eq null", [], id="null-gives-none"),
        pytest.param('title eq "x"', [], id="not-indexable"),
        pytest.param('emails.value eq "x"', [], id="sub-attribute"),
        pytest.param('nickname2 eq "x"', [], id="unknown"),
    ],
)
def test_equality_terms_are_the_index_hints_every_match_satisfies(
    text: str, terms: list[tuple[str, str]]
) -> None:
    assert equality_terms(parse_filter(text), USER_RESOURCE) == terms


def test_equality_terms_on_group_display_name() -> None:
    """Entra A10: groups are matched on displayName."""
    tree = parse_filter('DisplayName eq "Tour Guides"')
    assert equality_terms(tree, GROUP_RESOURCE) == [("displayName", "Tour Guides")]


def test_matcher_checks_the_filter_once_before_any_document() -> None:
    """The predicate the service filters with: a bad filter fails before any document."""
    with pytest.raises(InvalidFilter):
        matcher(parse_filter("active gt true"), USER_RESOURCE)
    predicate = matcher(parse_filter('userName sw "b"'), USER_RESOURCE)
    assert [predicate({"userName": name}) for name in ("bjensen", "ann")] == [True, False]


# -- attributes never returned ---------------------------------------------------------------


def test_a_filter_on_a_never_returned_attribute_is_invalid_even_without_documents() -> None:
    """The password's hash must not be found out one match at a time (RFC 7643 §4.1.1)."""
    with pytest.raises(InvalidFilter, match="'password' is never returned"):
        validate(parse_filter('userName pr and password sw "scrypt:"'), USER_RESOURCE)


def test_a_value_filter_on_a_never_returned_sub_attribute_is_invalid() -> None:
    """As in a PATCH path such as ``keys[secret eq "x"]``: the rule is read from the
    definitions, for every attribute and sub-attribute returned "never"."""
    keys = AttributeDef(
        "keys",
        type=COMPLEX,
        multi_valued=True,
        sub_attributes=(AttributeDef("value"), AttributeDef("secret", returned=NEVER)),
    )

    with pytest.raises(InvalidFilter, match="'secret' is never returned"):
        matches_element(parse_filter('secret sw "a"'), {"secret": "abc"}, keys)
    assert matches_element(parse_filter('value eq "k"'), {"value": "k"}, keys)
