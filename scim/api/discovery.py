"""Discovery endpoints (RFC 7644 §4): ServiceProviderConfig, Schemas, ResourceTypes.

They take no ``filter``: RFC 7644 §4 says a provider SHOULD answer one with 403, so that a
client never takes the full list it would otherwise get for the matches of its filter.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from scim import constants, errors
from scim.api.context import base_url, services
from scim.api.responses import scim_response
from scim.definitions import RESOURCE_TYPES, SCHEMAS
from scim.pagination import list_response

# The endpoints under the SCIM prefix that this module serves, canonically spelled.
ENDPOINTS = ("ServiceProviderConfig", "Schemas", "ResourceTypes")


def register(blueprint: Blueprint) -> None:
    """Add the discovery routes to the SCIM blueprint."""
    blueprint.add_url_rule("/ServiceProviderConfig", view_func=service_provider_config)
    blueprint.add_url_rule("/Schemas", view_func=list_schemas)
    blueprint.add_url_rule("/Schemas/<path:schema_id>", view_func=get_schema)
    blueprint.add_url_rule("/ResourceTypes", view_func=list_resource_types)
    blueprint.add_url_rule("/ResourceTypes/<name>", view_func=get_resource_type)


def _refuse_filter() -> None:
    """RFC 7644 §4: a filter on a discovery endpoint SHOULD be answered with 403 (a blank
    ``filter`` means none, as on ``/Users``).

    :raises errors.Forbidden:
    """
    text = request.args.get("filter")
    if text is not None and text.strip():
        raise errors.Forbidden(
            f"filter is not supported on {request.path}: discovery endpoints always return "
            "every entry (RFC 7644 §4); send the request without a filter"
        )


def service_provider_config() -> Response:
    """What this server supports (RFC 7643 §5): PATCH, filter, sort, ETag; no bulk."""
    _refuse_filter()
    settings = services().scim
    return scim_response(
        {
            "schemas": [constants.SERVICE_PROVIDER_CONFIG],
            "patch": {"supported": True},
            "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": True, "maxResults": settings.max_results},
            "changePassword": {"supported": True},
            "sort": {"supported": True},
            "etag": {"supported": True},
            "authenticationSchemes": [
                {
                    "type": "oauthbearertoken",
                    "name": "Bearer token",
                    "description": "A long-lived bearer token created in Proware's control "
                    "panel (User Provisioning > Create bearer token) or with "
                    "'python app.py token create'.",
                    "primary": True,
                }
            ],
            "meta": {
                "resourceType": "ServiceProviderConfig",
                "location": f"{base_url()}/ServiceProviderConfig",
            },
        }
    )


def list_schemas() -> Response:
    """Every schema definition, as a ListResponse (Entra A15)."""
    _refuse_filter()
    resources = [_schema(schema_id) for schema_id in SCHEMAS]
    return scim_response(list_response(resources, len(resources), 1))


def get_schema(schema_id: str) -> Response:
    """One schema definition by its URN (case-insensitive)."""
    _refuse_filter()
    for known in SCHEMAS:
        if known.casefold() == schema_id.casefold():
            return scim_response(_schema(known))
    raise errors.NotFound(f"no schema {errors.quoted(schema_id)}; known: {', '.join(SCHEMAS)}")


def list_resource_types() -> Response:
    """Users and Groups, with the Enterprise User extension on User."""
    _refuse_filter()
    resources = [_resource_type(name) for name in RESOURCE_TYPES]
    return scim_response(list_response(resources, len(resources), 1))


def get_resource_type(name: str) -> Response:
    """One resource type by name (case-insensitive)."""
    _refuse_filter()
    for known in RESOURCE_TYPES:
        if known.casefold() == name.casefold():
            return scim_response(_resource_type(known))
    raise errors.NotFound(
        f"no resource type {errors.quoted(name)}; known: {', '.join(RESOURCE_TYPES)}"
    )


def _schema(schema_id: str) -> dict:
    return SCHEMAS[schema_id].to_scim(f"{base_url()}/Schemas/{schema_id}")


def _resource_type(name: str) -> dict:
    return RESOURCE_TYPES[name].to_scim(f"{base_url()}/ResourceTypes/{name}")
