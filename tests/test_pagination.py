"""Paging, sorting and the ListResponse (RFC 7644 §3.4.2.3, §3.4.2.4)."""

from __future__ import annotations

import pytest

from scim import constants
from scim.definitions import GROUP_RESOURCE, USER_RESOURCE
from scim.errors import InvalidValue
from scim.pagination import (
    Page,
    list_response,
    parse_paging,
    parse_sort_order,
    sort_documents,
)
from scim.paths import AttrPath

ENTERPRISE = constants.ENTERPRISE_USER


# -- paging --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start_index", "count", "page"),
    [
        pytest.param(None, None, Page(1, 100), id="defaults"),
        pytest.param("6", "5", Page(6, 5), id="strings-from-the-query"),
        pytest.param(11, 5, Page(11, 5), id="integers"),
        pytest.param("0", "5", Page(1, 5), id="start-below-one-is-one"),
        pytest.param("-3", None, Page(1, 100), id="negative-start-is-one"),
        pytest.param(None, "-1", Page(1, 0), id="negative-count-is-zero"),
        pytest.param(None, "0", Page(1, 0), id="zero-count-is-kept"),
        pytest.param(None, "5000", Page(1, 100), id="count-capped-at-max"),
        pytest.param(" 2 ", "+3", Page(2, 3), id="spaces-and-plus-sign"),
    ],
)
def test_paging_is_clamped_as_the_rfc_says(start_index, count, page: Page) -> None:
    assert parse_paging(start_index, count, max_results=100) == page


@pytest.mark.parametrize(
    ("start_index", "count", "detail"),
    [
        (None, "ten", "count: expected an integer, got 'ten'"),
        ("1.5", None, "startIndex: expected an integer, got '1.5'"),
        ("", None, "startIndex: expected an integer, got ''"),
        (None, "٣", "count: expected an integer, got '٣'"),
    ],
)
def test_non_integer_paging_is_invalid_value(start_index, count, detail: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        parse_paging(start_index, count, max_results=100)
    assert caught.value.detail == detail


def test_page_cut_slices_from_the_one_based_start() -> None:
    items = list(range(1, 11))
    assert Page(3, 4).cut(items) == [3, 4, 5, 6]
    assert Page(9, 5).cut(items) == [9, 10]
    assert Page(20, 5).cut(items) == []
    assert Page(1, 0).cut(items) == []
    assert Page(8, None).cut(items) == [8, 9, 10]


def test_list_response_counts_every_match_not_just_the_page() -> None:
    """The Postman "Paginate" test: 5 users, count=2 -> totalResults 5, itemsPerPage 2 (A16)."""
    everyone = [{"id": str(n)} for n in range(5)]
    page = parse_paging("1", "2", max_results=100)
    assert list_response(page.cut(everyone), len(everyone), page.start_index) == {
        "schemas": [constants.LIST_RESPONSE],
        "totalResults": 5,
        "startIndex": 1,
        "itemsPerPage": 2,
        "Resources": [{"id": "0"}, {"id": "1"}],
    }


def test_empty_list_response_has_zero_items_per_page() -> None:
    """A1: Test Connection expects an empty ListResponse."""
    assert list_response([], 0, 1)["itemsPerPage"] == 0


# -- sort order ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ascending"),
    [(None, True), ("", True), ("ascending", True), ("Descending", False), ("DESCENDING", False)],
)
def test_sort_order_parses_case_insensitively(text: str | None, ascending: bool) -> None:
    assert parse_sort_order(text) is ascending


def test_unknown_sort_order_is_invalid_value() -> None:
    with pytest.raises(InvalidValue, match="sortOrder: .*'up'"):
        parse_sort_order("up")


# -- sorting -------------------------------------------------------------------------------


def ids(documents: list[dict]) -> list[str]:
    return [document["id"] for document in documents]


USERS = [
    {"id": "1", "userName": "bob", "meta": {"created": "2024-03-01T00:00:00Z"}},
    {"id": "2", "userName": "Alice", "meta": {"created": "2024-01-01T10:00:00+02:00"}},
    {"id": "3", "meta": {"created": "2023-12-31T23:00:00Z"}},
    {"id": "4", "userName": "carol", "meta": {"created": "2024-01-01T09:00:00Z"}},
]


def test_strings_sort_case_insensitively_unless_case_exact() -> None:
    by_name = sort_documents(USERS, AttrPath(None, "userName"), True, USER_RESOURCE)
    assert ids(by_name) == ["2", "1", "4", "3"]
    docs = [{"id": "a", "externalId": "b"}, {"id": "b", "externalId": "B"}]
    by_external = sort_documents(docs, AttrPath(None, "externalId"), True, USER_RESOURCE)
    assert ids(by_external) == ["b", "a"]  # caseExact: "B" < "b"


def test_missing_values_sort_last_ascending_and_first_descending() -> None:
    """RFC 7644 §3.4.2.3."""
    path = AttrPath(None, "userName")
    assert ids(sort_documents(USERS, path, True, USER_RESOURCE))[-1] == "3"
    assert ids(sort_documents(USERS, path, False, USER_RESOURCE)) == ["3", "4", "1", "2"]


def test_date_times_sort_chronologically_across_offsets() -> None:
    by_created = sort_documents(USERS, AttrPath(None, "meta", "created"), True, USER_RESOURCE)
    assert ids(by_created) == ["3", "2", "4", "1"]


def test_multi_valued_sorts_by_the_primary_value_else_the_first() -> None:
    docs = [
        {"id": "1", "emails": [{"value": "a@x"}, {"value": "z@x", "primary": True}]},
        {"id": "2", "emails": [{"value": "m@x"}, {"value": "b@x"}]},
        {"id": "3", "emails": []},
    ]
    assert ids(sort_documents(docs, AttrPath(None, "emails"), True, USER_RESOURCE)) == [
        "2",
        "1",
        "3",
    ]
    by_value = sort_documents(docs, AttrPath(None, "emails", "value"), False, USER_RESOURCE)
    assert ids(by_value) == ["3", "1", "2"]


def test_extension_attribute_sorts_by_its_urn_path() -> None:
    docs = [
        {"id": "1", ENTERPRISE: {"department": "Sales"}},
        {"id": "2", ENTERPRISE: {"department": "hr"}},
        {"id": "3"},
    ]
    path = AttrPath(ENTERPRISE, "department")
    assert ids(sort_documents(docs, path, True, USER_RESOURCE)) == ["2", "1", "3"]


def test_sorting_is_stable_both_ways() -> None:
    docs = [{"id": str(n), "displayName": "same"} for n in range(5)]
    path = AttrPath(None, "displayName")
    assert ids(sort_documents(docs, path, True, GROUP_RESOURCE)) == ["0", "1", "2", "3", "4"]
    assert ids(sort_documents(docs, path, False, GROUP_RESOURCE)) == ["0", "1", "2", "3", "4"]


def test_values_of_unexpected_types_do_not_break_sorting() -> None:
    docs = [
        {"id": "1", "userName": 7},
        {"id": "2", "userName": "a"},
        {"id": "3", "userName": ["x"]},
    ]
    assert sorted(ids(sort_documents(docs, AttrPath(None, "userName"), True, USER_RESOURCE))) == [
        "1",
        "2",
        "3",
    ]


@pytest.mark.parametrize("sort_by", [None, AttrPath(None, "shoeSize"), AttrPath(None, "name")])
def test_no_or_unsortable_attribute_keeps_the_order(sort_by: AttrPath | None) -> None:
    assert ids(sort_documents(USERS, sort_by, False, USER_RESOURCE)) == ["1", "2", "3", "4"]


def test_sorting_returns_a_new_list() -> None:
    assert sort_documents(USERS, None, True, USER_RESOURCE) is not USERS
