"""Two gaps that SCIM clients other than Entra hit: POST /.search at the service root
(RFC 7644 §3.4.3) and endpoint names in any case (/users, /GROUPS)."""

from __future__ import annotations

import pytest

from scim import constants
from tests.conftest import ScimClient

SEARCH = constants.SEARCH_REQUEST


@pytest.fixture
def directory(scim: ScimClient) -> dict[str, str]:
    """Two users and two groups, created users first."""
    ann = scim.create_user("ann", title="Engineer", displayName="Ann Example")
    bob = scim.create_user("bob", title="Sales")
    eng = scim.create_group("Engineers", [ann["id"]])
    ops = scim.create_group("Ops")
    return {"ann": ann["id"], "bob": bob["id"], "eng": eng["id"], "ops": ops["id"]}


def search(scim: ScimClient, **body: object) -> dict:
    response = scim.post("/.search", {"schemas": [SEARCH], **body})
    assert response.status_code == 200, response.get_json()
    assert response.mimetype == constants.SCIM_MEDIA_TYPE
    return response.get_json()


def test_a_root_search_without_a_filter_lists_every_resource_type(
    scim: ScimClient, directory: dict[str, str]
) -> None:
    found = search(scim)

    assert found["schemas"] == [constants.LIST_RESPONSE]
    assert found["totalResults"] == 4
    kinds = [(r["meta"]["resourceType"], r["schemas"][0]) for r in found["Resources"]]
    assert kinds == [
        ("User", constants.USER),
        ("User", constants.USER),
        ("Group", constants.GROUP),
        ("Group", constants.GROUP),
    ]


def test_a_filter_applies_to_each_type_that_has_the_attribute(
    scim: ScimClient, directory: dict[str, str]
) -> None:
    """displayName is a User and a Group attribute; title only a User one."""
    by_display_name = search(scim, filter='displayName co "n"')
    by_title = search(scim, filter='title eq "Sales"')

    assert sorted(r["id"] for r in by_display_name["Resources"]) == sorted(
        [directory["ann"], directory["eng"]]
    )
    assert [r["id"] for r in by_title["Resources"]] == [directory["bob"]]


def test_sorting_and_paging_span_the_types(scim: ScimClient, directory: dict[str, str]) -> None:
    """Sorted by displayName: bob (none) last in ascending order, across types."""
    first = search(scim, sortBy="displayName", count=2)
    second = search(scim, sortBy="displayName", startIndex=3, count=2)

    assert first["totalResults"] == second["totalResults"] == 4
    assert [r["id"] for r in first["Resources"] + second["Resources"]] == [
        directory["ann"],  # "Ann Example"
        directory["eng"],  # "Engineers"
        directory["ops"],  # "Ops"
        directory["bob"],  # no displayName
    ]
    assert (first["startIndex"], first["itemsPerPage"]) == (1, 2)


def test_projection_applies_to_each_resource(scim: ScimClient, directory: dict[str, str]) -> None:
    found = search(scim, attributes=["displayName"], filter="displayName pr")

    for resource in found["Resources"]:
        assert set(resource) <= {"schemas", "id", "displayName", "meta"}
        assert "members" not in resource and "userName" not in resource


def test_a_comparison_one_type_cannot_make_is_still_a_400(
    scim: ScimClient, directory: dict[str, str]
) -> None:
    response = scim.post("/.search", {"schemas": [SEARCH], "filter": "active gt true"})

    assert response.status_code == 400
    assert response.get_json()["scimType"] == "invalidFilter"


def test_a_read_only_token_may_search_the_root(app, scim_for, directory) -> None:
    reader = scim_for(app, name="auditor", read_only=True)

    assert reader.post("/.search", {"schemas": [SEARCH]}).status_code == 200


def test_the_root_search_is_post_only(scim: ScimClient) -> None:
    response = scim.get("/.search")

    assert response.status_code == 405
    assert "POST" in response.headers["Allow"] and "GET" not in response.headers["Allow"]


@pytest.mark.parametrize(
    "path", ["/users", "/USERS", "/uSeRs", "/groups", "/GROUPS", "/schemas", "/resourcetypes"]
)
def test_endpoint_names_match_in_any_case(scim: ScimClient, path: str) -> None:
    response = scim.get(path)

    assert response.status_code == 200
    assert response.get_json()["schemas"] == [constants.LIST_RESPONSE]


def test_a_resource_created_at_a_lowercase_endpoint_is_located_canonically(
    scim: ScimClient,
) -> None:
    response = scim.post("/users", {"userName": "carol"})

    assert response.status_code == 201
    location = response.headers["Location"]
    assert location.endswith(f"/scim/v2/Users/{response.get_json()['id']}")
    assert response.get_json()["meta"]["location"] == location
    item = scim.get(f"/USERS/{response.get_json()['id']}")
    assert item.status_code == 200 and item.get_json()["userName"] == "carol"


def test_lowercase_search_endpoints_work_too(scim: ScimClient, directory: dict[str, str]) -> None:
    users = scim.post("/users/.SEARCH", {"schemas": [SEARCH], "filter": 'userName eq "ann"'})
    everything = scim.post("/.Search", {"schemas": [SEARCH]})

    assert users.get_json()["totalResults"] == 1
    assert everything.get_json()["totalResults"] == 4


def test_only_the_endpoint_segment_is_respelled(scim: ScimClient) -> None:
    """An id that happens to spell an endpoint name is left as it is."""
    assert scim.get("/Users/users").status_code == 404
    assert scim.get("/other").status_code == 404
