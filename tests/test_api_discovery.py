"""Discovery endpoints through HTTP (RFC 7644 §4, entra-provisioning.md A15)."""

from __future__ import annotations

import pytest

from scim import constants

BASE = "http://localhost/scim/v2"
SCHEMA_IDS = [constants.USER, constants.ENTERPRISE_USER, constants.GROUP]


def _nulls(value: object, where: str = "") -> list[str]:
    """Paths to every null inside ``value`` (Entra A15: no null values)."""
    if value is None:
        return [where]
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in _nulls(item, f"{where}.{key}")]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _nulls(item, f"{where}[{i}]")]
    return []


def test_service_provider_config_says_what_is_supported(scim) -> None:
    response = scim.get("/ServiceProviderConfig")

    assert response.status_code == 200
    assert response.mimetype == constants.SCIM_MEDIA_TYPE
    body = response.get_json()
    assert body["schemas"] == [constants.SERVICE_PROVIDER_CONFIG]
    assert body["patch"] == {"supported": True}
    assert body["bulk"]["supported"] is False
    assert body["filter"] == {"supported": True, "maxResults": 1000}
    assert body["sort"] == {"supported": True}
    assert body["etag"] == {"supported": True}
    assert body["changePassword"] == {"supported": True}
    assert [scheme["type"] for scheme in body["authenticationSchemes"]] == ["oauthbearertoken"]
    assert body["meta"]["location"] == f"{BASE}/ServiceProviderConfig"
    assert _nulls(body) == []


def test_schemas_is_a_list_response_of_every_schema(scim) -> None:
    body = scim.get("/Schemas").get_json()

    assert body["schemas"] == [constants.LIST_RESPONSE]
    assert body["totalResults"] == 3
    assert body["itemsPerPage"] == 3
    assert [schema["id"] for schema in body["Resources"]] == SCHEMA_IDS
    assert all(schema["schemas"] == [constants.SCHEMA] for schema in body["Resources"])
    assert _nulls(body) == []


@pytest.mark.parametrize("schema_id", SCHEMA_IDS)
def test_each_schema_can_be_read_by_its_urn(scim, schema_id: str) -> None:
    response = scim.get(f"/Schemas/{schema_id}")

    assert response.status_code == 200
    body = response.get_json()
    assert body["id"] == schema_id
    assert body["meta"] == {"resourceType": "Schema", "location": f"{BASE}/Schemas/{schema_id}"}
    assert body == next(
        schema
        for schema in scim.get("/Schemas").get_json()["Resources"]
        if schema["id"] == schema_id
    )


def test_a_schema_urn_matches_in_any_case(scim) -> None:
    body = scim.get(f"/Schemas/{constants.USER.upper()}").get_json()

    assert body["id"] == constants.USER


def test_the_user_schema_describes_user_name_and_password(scim) -> None:
    attributes = {
        a["name"]: a for a in scim.get(f"/Schemas/{constants.USER}").get_json()["attributes"]
    }

    assert attributes["userName"]["uniqueness"] == "server"
    assert attributes["userName"]["required"] is True
    assert attributes["userName"]["caseExact"] is False
    assert attributes["password"]["mutability"] == "writeOnly"
    assert attributes["password"]["returned"] == "never"


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/Schemas/urn:nope", id="unknown-urn"),
        pytest.param(f"/Schemas/{constants.USER}x", id="urn-with-suffix"),
        pytest.param("/ResourceTypes/Robot", id="unknown-resource-type"),
        pytest.param("/ResourceTypes/Groups", id="endpoint-is-not-a-name"),
    ],
)
def test_an_unknown_schema_or_resource_type_is_404_listing_the_known_ones(scim, path) -> None:
    response = scim.get(path)

    assert response.status_code == 404
    body = response.get_json()
    assert body["schemas"] == [constants.ERROR]
    assert body["status"] == "404"
    assert "known:" in body["detail"]


def test_resource_types_lists_users_and_groups(scim) -> None:
    body = scim.get("/ResourceTypes").get_json()

    assert body["schemas"] == [constants.LIST_RESPONSE]
    assert body["totalResults"] == 2
    by_name = {resource["name"]: resource for resource in body["Resources"]}
    assert by_name["User"]["endpoint"] == "/Users"
    assert by_name["User"]["schema"] == constants.USER
    assert by_name["User"]["schemaExtensions"] == [
        {"schema": constants.ENTERPRISE_USER, "required": False}
    ]
    assert by_name["Group"]["endpoint"] == "/Groups"
    assert by_name["Group"]["schemaExtensions"] == []
    assert _nulls(body) == []


@pytest.mark.parametrize(
    ("name", "canonical"), [("User", "User"), ("user", "User"), ("GROUP", "Group")]
)
def test_a_resource_type_can_be_read_by_name_in_any_case(scim, name, canonical) -> None:
    response = scim.get(f"/ResourceTypes/{name}")

    assert response.status_code == 200
    body = response.get_json()
    assert body["id"] == canonical
    assert body["meta"]["location"] == f"{BASE}/ResourceTypes/{canonical}"


def test_every_resource_type_schema_is_served(scim) -> None:
    """The schemas the resource types name are the ones /Schemas serves (no drift)."""
    served = {schema["id"] for schema in scim.get("/Schemas").get_json()["Resources"]}
    named = set()
    for resource_type in scim.get("/ResourceTypes").get_json()["Resources"]:
        named.add(resource_type["schema"])
        named.update(extension["schema"] for extension in resource_type["schemaExtensions"])

    assert named == served


DISCOVERY_PATHS = [
    "/ServiceProviderConfig",
    "/Schemas",
    f"/Schemas/{constants.USER}",
    "/ResourceTypes",
    "/ResourceTypes/User",
]


@pytest.mark.parametrize("path", DISCOVERY_PATHS)
def test_a_filter_on_a_discovery_endpoint_is_403(scim, path: str) -> None:
    """RFC 7644 §4: the provider SHOULD answer 403, so no client reads the full list as the
    matches of its filter."""
    response = scim.get(path, query_string={"filter": 'id eq "urn:x"'})

    assert response.status_code == 403, response.get_data(as_text=True)
    assert response.mimetype == constants.SCIM_MEDIA_TYPE
    body = response.get_json()
    assert body["schemas"] == [constants.ERROR]
    assert body["status"] == "403"
    assert body["detail"].startswith(f"filter is not supported on /scim/v2{path}")


@pytest.mark.parametrize("path", DISCOVERY_PATHS)
def test_a_blank_filter_on_a_discovery_endpoint_is_no_filter(scim, path: str) -> None:
    assert scim.get(path, query_string={"filter": " "}).status_code == 200
