"""Listing and searching through HTTP: filter, sort, paging, projection (RFC 7644 §3.4)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from scim import constants
from server.config import ScimSettings, Settings

MAX_RESULTS = 5


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A small maximum page, so that clamping and enforcement are visible; on the backend
    of the test (conftest's ``settings``: this module runs on both, as the API does)."""
    return replace(settings, scim=ScimSettings(max_results=MAX_RESULTS))


@pytest.fixture
def seven(scim) -> list[dict]:
    """Seven users u1..u7, in creation order; odd ones in Sales."""
    return [
        scim.create_user(
            f"u{n}",
            externalId=f"ext-{n % 2}",
            active=n != 3,
            **{constants.ENTERPRISE_USER: {"department": "Sales" if n % 2 else "Ops"}},
        )
        for n in range(1, 8)
    ]


def _names(body: dict) -> list[str]:
    return [resource["userName"] for resource in body.get("Resources", [])]


def test_test_connection_probe_gets_an_empty_list_response(scim) -> None:
    """entra-provisioning.md A1: a random GUID finds nothing: 200 with totalResults 0."""
    response = scim.get("/Users?filter=userName+eq+%227d420df3-9995-4831-a406-ecf8166f5f6a%22")

    assert response.status_code == 200
    assert response.get_json() == {
        "schemas": [constants.LIST_RESPONSE],
        "totalResults": 0,
        "startIndex": 1,
        "itemsPerPage": 0,
        "Resources": [],
    }


def test_filter_on_user_name_is_case_insensitive(scim, seven) -> None:
    """entra-provisioning.md A2: FORD_PURDY@... finds ford_purdy@..."""
    response = scim.get('/Users?filter=userName eq "U4"')

    assert _names(response.get_json()) == ["u4"]


def test_filter_on_external_id_returns_every_match(scim, seven) -> None:
    body = scim.get('/Users?filter=externalId eq "ext-0"').get_json()

    assert body["totalResults"] == 3
    assert _names(body) == ["u2", "u4", "u6"]


def test_filter_on_external_id_is_case_exact(scim, seven) -> None:
    """Unlike userName (Q10), externalId is caseExact (RFC 7643 §3.1, entra-provisioning.md
    Q11): Entra matching on an id from its side must not take another object's "EXT-0"
    for its "ext-0"."""
    body = scim.get('/Users?filter=externalId eq "EXT-0"').get_json()

    assert (body["totalResults"], _names(body)) == (0, [])


def test_filter_on_id_finds_the_user(scim, seven) -> None:
    target = seven[4]

    body = scim.get(f'/Users?filter=id eq "{target["id"]}"').get_json()

    assert [resource["id"] for resource in body["Resources"]] == [target["id"]]


def test_filter_on_an_attribute_without_an_index(scim, seven) -> None:
    """displayName is indexed for groups only; on users the filter scans."""
    scim.patch_ops(
        f"/Users/{seven[1]['id']}", {"op": "replace", "path": "displayName", "value": "Bo B"}
    )

    body = scim.get('/Users?filter=displayName eq "bo b" and userName eq "U2"').get_json()

    assert _names(body) == ["u2"]


def test_disabled_users_are_still_found(scim, seven) -> None:
    """entra-provisioning.md Q12."""
    body = scim.get('/Users?filter=userName eq "u3"').get_json()

    assert body["Resources"][0]["active"] is False


def test_filter_on_an_extension_attribute(scim, seven) -> None:
    body = scim.get(
        "/Users",
        query_string={
            "filter": f'{constants.ENTERPRISE_USER}:department eq "SALES" and active eq false',
        },
    ).get_json()

    assert _names(body) == ["u3"]


def test_total_results_counts_every_match_before_the_page_is_cut(scim, seven) -> None:
    body = scim.get('/Users?filter=userName sw "u"&startIndex=2&count=2').get_json()

    assert body["totalResults"] == 7
    assert body["startIndex"] == 2
    assert body["itemsPerPage"] == 2
    assert _names(body) == ["u2", "u3"]


def test_pages_walk_every_user_once(scim, seven) -> None:
    """entra-provisioning.md A16: account discovery pages with startIndex/count, no filter."""
    seen: list[str] = []
    for start in (1, 4, 7):
        body = scim.get(f"/Users?startIndex={start}&count=3").get_json()
        assert body["totalResults"] == 7
        assert body["startIndex"] == start
        seen += _names(body)

    assert seen == [f"u{n}" for n in range(1, 8)]


def test_count_zero_gives_the_total_and_no_resources(scim, seven) -> None:
    body = scim.get("/Users?count=0").get_json()

    assert body["totalResults"] == 7
    assert body["itemsPerPage"] == 0
    assert body.get("Resources", []) == []


CLAMPING = [
    pytest.param("startIndex=0&count=2", 1, ["u1", "u2"], id="startIndex-0-means-1"),
    pytest.param("startIndex=-5&count=2", 1, ["u1", "u2"], id="negative-startIndex-means-1"),
    pytest.param("count=-1", 1, [], id="negative-count-means-0"),
    pytest.param("count=1000", 1, ["u1", "u2", "u3", "u4", "u5"], id="count-above-max-is-max"),
    pytest.param("", 1, ["u1", "u2", "u3", "u4", "u5"], id="no-count-is-max"),
    pytest.param("startIndex=100", 100, [], id="startIndex-past-the-end-is-empty"),
    pytest.param("startIndex=%2B6&count=%2B9", 6, ["u6", "u7"], id="explicit-plus-sign"),
    pytest.param(f"startIndex={10**20}", 10**20, [], id="startIndex-beyond-any-index"),
    pytest.param(
        f'startIndex={10**20}&filter=userName sw "u"', 10**20, [], id="huge-startIndex-filtered"
    ),
    pytest.param(f"count={10**20}", 1, ["u1", "u2", "u3", "u4", "u5"], id="huge-count"),
]


@pytest.mark.parametrize(("query", "start_index", "names"), CLAMPING)
def test_out_of_range_paging_numbers_are_clamped(
    scim, seven, query: str, start_index: int, names: list[str]
) -> None:
    """RFC 7644 §3.4.2.4: out-of-range values are interpreted, not refused."""
    body = scim.get(f"/Users?{query}").get_json()

    assert body["totalResults"] == 7
    assert body["startIndex"] == start_index
    assert _names(body) == names


def test_the_maximum_page_is_advertised_and_enforced(scim, seven) -> None:
    config = scim.get("/ServiceProviderConfig").get_json()
    filtered = scim.get('/Users?filter=userName sw "u"&count=50').get_json()
    searched = scim.post(
        "/Users/.search", {"schemas": [constants.SEARCH_REQUEST], "count": 50}
    ).get_json()

    assert config["filter"]["maxResults"] == MAX_RESULTS
    assert filtered["itemsPerPage"] == MAX_RESULTS
    assert searched["itemsPerPage"] == MAX_RESULTS


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        pytest.param("count=ten", "count", id="count-word"),
        pytest.param("count=1.5", "count", id="count-decimal"),
        pytest.param("startIndex=first", "startIndex", id="startIndex-word"),
        pytest.param("startIndex=", "startIndex", id="startIndex-empty"),
    ],
)
def test_non_integer_paging_numbers_are_400(scim, query: str, parameter: str) -> None:
    response = scim.get(f"/Users?{query}")

    assert response.status_code == 400
    body = response.get_json()
    assert body["scimType"] == "invalidValue"
    assert body["detail"].startswith(f"{parameter}: expected an integer")


def test_unknown_query_parameters_are_ignored(scim, seven) -> None:
    body = scim.get("/Users?count=2&foo=bar&ADSCIMVersion=5.0").get_json()

    assert _names(body) == ["u1", "u2"]


SORTS = [
    pytest.param("sortBy=userName&sortOrder=descending", ["u7", "u6", "u5"], id="descending"),
    pytest.param("sortBy=USERNAME&sortOrder=Ascending", ["u1", "u2", "u3"], id="any-case"),
    pytest.param(
        f"sortBy={constants.ENTERPRISE_USER}:department",
        ["u2", "u4", "u6"],
        id="extension-attribute",
    ),
    pytest.param("sortBy=nickName", ["u1", "u2", "u3"], id="no-values-keeps-order"),
]


@pytest.mark.parametrize(("query", "names"), SORTS)
def test_sorting(scim, seven, query: str, names: list[str]) -> None:
    body = scim.get(f"/Users?{query}&count=3").get_json()

    assert body["totalResults"] == 7
    assert _names(body) == names


def test_a_bad_sort_order_is_400(scim) -> None:
    response = scim.get("/Users?sortBy=userName&sortOrder=sideways")

    assert response.status_code == 400
    assert "sortOrder" in response.get_json()["detail"]


def test_attributes_returns_only_those_and_the_id(scim, seven) -> None:
    body = scim.get('/Users?filter=userName eq "u1"&attributes=userName,emails').get_json()

    assert body["Resources"] == [
        {
            "schemas": [constants.USER, constants.ENTERPRISE_USER],
            "id": seven[0]["id"],
            "userName": "u1",
        }
    ]


def test_excluded_attributes_leave_out_those(scim, seven) -> None:
    body = scim.get(
        "/Users",
        query_string={"filter": 'userName eq "u1"', "excludedAttributes": "meta,externalId"},
    ).get_json()

    resource = body["Resources"][0]
    assert "meta" not in resource and "externalId" not in resource
    assert resource["userName"] == "u1"


SEARCHES = [
    pytest.param(
        {"filter": 'externalId eq "ext-1"', "sortBy": "userName", "sortOrder": "descending"},
        'filter=externalId eq "ext-1"&sortBy=userName&sortOrder=descending',
        id="filter-and-sort",
    ),
    pytest.param(
        {"startIndex": 3, "count": 2, "attributes": ["userName"]},
        "startIndex=3&count=2&attributes=userName",
        id="paging-and-attributes",
    ),
    pytest.param(
        {"excludedAttributes": ["meta"], "count": 1},
        "excludedAttributes=meta&count=1",
        id="excluded-attributes",
    ),
]


@pytest.mark.parametrize(("search", "query"), SEARCHES)
def test_post_search_answers_like_the_same_get(scim, seven, search: dict, query: str) -> None:
    """RFC 7644 §3.4.3: POST /.search takes the query parameters in a body."""
    searched = scim.post("/Users/.search", {"schemas": [constants.SEARCH_REQUEST], **search})

    assert searched.status_code == 200
    assert searched.get_json() == scim.get(f"/Users?{query}").get_json()


def test_post_search_with_a_string_count_is_400(scim) -> None:
    response = scim.post("/Users/.search", {"schemas": [constants.SEARCH_REQUEST], "count": "many"})

    assert response.status_code == 400
    assert "count" in response.get_json()["detail"]


def test_post_search_with_too_many_attribute_names_is_400(scim) -> None:
    """A bounded list: each name was resolved for every resource of the page."""
    names = [f"a{i}" for i in range(50_000)]
    body = {"schemas": [constants.SEARCH_REQUEST], "attributes": names, "count": 1000}

    response = scim.post("/Users/.search", body)

    assert response.status_code == 400
    assert response.get_json()["scimType"] == "invalidValue"
    assert "at most 200" in response.get_json()["detail"]


def test_groups_list_and_search(scim, seven) -> None:
    scim.create_group("Staff", [seven[0]["id"]])
    scim.create_group("Admins")

    listed = scim.get("/Groups?sortBy=displayName").get_json()
    searched = scim.post(
        "/Groups/.search",
        {"schemas": [constants.SEARCH_REQUEST], "filter": 'displayName eq "STAFF"'},
    ).get_json()

    assert [group["displayName"] for group in listed["Resources"]] == ["Admins", "Staff"]
    assert [group["displayName"] for group in searched["Resources"]] == ["Staff"]
    assert searched["Resources"][0]["members"][0]["value"] == seven[0]["id"]
