"""Views for /Users and /Groups: list, search, create, read, replace, patch, delete.

Thin by design: each view turns the request into one :class:`scim.service.Directory` call
and its result into a response.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, g, request
from werkzeug.exceptions import MethodNotAllowed

from scim import constants, errors
from scim.api.context import base_url, request_context, services
from scim.api.responses import read_json, scim_response
from scim.definitions import RESOURCE_TYPES
from scim.pagination import list_response, parse_paging, parse_sort_order
from scim.paths import parse_attr_path
from scim.projection import parse_attribute_list, project
from scim.schemas.search import load_search_request
from scim.service import Query, parse_query_filter, wants_members

log = logging.getLogger("proware.scim")

ENDPOINTS = {"Users": constants.USER_TYPE, "Groups": constants.GROUP_TYPE}

# RFC 7644 §3.11's alias for the authenticated subject. A bearer token here stands for an
# Entra provisioning job, not for a user, so there is no subject to alias.
ME_ENDPOINT = "Me"
# The query parameter (and .search member), named by its errors as by the RFC (§3.4.2.5).
EXCLUDED = "excludedAttributes"
# RFC 7644 §3.7; ServiceProviderConfig says bulk.supported false, and Entra never sends one.
BULK_ENDPOINT = "Bulk"


def register(blueprint: Blueprint) -> None:
    """Add the resource routes to the SCIM blueprint."""
    blueprint.add_url_rule("/.search", "search_all", search_everything, methods=["POST"])
    for rule in (f"/{ME_ENDPOINT}", f"/{ME_ENDPOINT}/<path:rest>"):
        blueprint.add_url_rule(rule, "me", me_alias, methods=_ME_METHODS)
    blueprint.add_url_rule(f"/{BULK_ENDPOINT}", "bulk", bulk, methods=["POST"])
    for endpoint, kind in ENDPOINTS.items():
        defaults = {"kind": kind}
        blueprint.add_url_rule(
            f"/{endpoint}", f"list_{kind}", list_resources, methods=["GET"], defaults=defaults
        )
        blueprint.add_url_rule(
            f"/{endpoint}", f"create_{kind}", create_resource, methods=["POST"], defaults=defaults
        )
        blueprint.add_url_rule(
            f"/{endpoint}/.search",
            f"search_{kind}",
            search_resources,
            methods=["POST"],
            defaults=defaults,
        )
        blueprint.add_url_rule(
            f"/{endpoint}/<id>",
            f"item_{kind}",
            resource_item,
            methods=["GET", "PUT", "PATCH", "DELETE"],
            defaults=defaults,
        )


_ME_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def me_alias(rest: str = "") -> Response:
    """/Me, any method: 501, as RFC 7644 §3.11 asks of a provider without the alias."""
    raise errors.NotImplementedHere(
        f"{request.path} is not supported: /Me is an alias for the authenticated user "
        "(RFC 7644 §3.11), and a bearer token here is a provisioning client, not a user; "
        "use /Users/{id}"
    )


def bulk() -> Response:
    """POST /Bulk: 501, which RFC 7644 §3.12 gives an operation the provider does not
    support; a 404 would read as a wrong Tenant URL."""
    raise errors.NotImplementedHere(
        f"{request.path} is not supported: this service provider does no bulk operations "
        "(ServiceProviderConfig bulk.supported is false); send each operation as its own "
        "request"
    )


def list_resources(kind: str) -> Response:
    """GET /Users or /Groups with filter, sortBy, sortOrder, startIndex, count (§3.4.2)."""
    args = request.args
    query = _query(
        filter_text=args.get("filter"),
        sort_by=args.get("sortBy"),
        sort_order=args.get("sortOrder"),
        start_index=args.get("startIndex"),
        count=args.get("count"),
        attributes=args.get("attributes"),
        excluded=args.get(EXCLUDED),
    )
    return _list(kind, query)


def search_resources(kind: str) -> Response:
    """POST /Users/.search: the same query in a body (RFC 7644 §3.4.3)."""
    return _list(kind, _search_query())


def search_everything() -> Response:
    """POST /.search at the service root: one query over users and groups (RFC 7644 §3.4.3)."""
    result = services().directory.search_all(_search_query(), base_url())
    g.scim_event = {"operation": "query", "resourceType": None, "matched": result.total}
    return scim_response(list_response(result.resources, result.total, result.start_index))


def _search_query() -> Query:
    """The query of a SearchRequest body."""
    search = load_search_request(read_json())
    return _query(
        filter_text=search.get("filter"),
        sort_by=search.get("sortBy"),
        sort_order=search.get("sortOrder"),
        start_index=search.get("startIndex"),
        count=search.get("count"),
        attributes=",".join(search.get("attributes") or []) or None,
        excluded=",".join(search.get(EXCLUDED) or []) or None,
    )


def create_resource(kind: str) -> Response:
    """POST /Users or /Groups: 201 with the resource, Location and ETag (§3.3), projected by
    ``attributes``/``excludedAttributes`` (§3.9)."""
    # Parsed first: a bad parameter is a 400 that creates nothing.
    attributes, excluded = _projection(request.args)
    outcome = services().directory.create(
        kind,
        read_json(),
        base_url(),
        context=request_context(201),
        with_members=wants_members(kind, attributes, excluded),
    )
    _report_skipped(kind, outcome.resource["id"], [], outcome.skipped_members)
    return _resource_response(
        outcome.resource, kind, status=201, location=True, attributes=attributes, excluded=excluded
    )


def resource_item(kind: str, id: str) -> Response:
    """GET (and HEAD), PUT, PATCH or DELETE one resource by id."""
    if id == ".search":
        # /.search is POST only (RFC 7644 §3.4.3), not a resource called ".search".
        raise MethodNotAllowed(valid_methods=["POST"])
    directory = services().directory
    if_match = request.headers.get("If-Match")
    if_none_match = request.headers.get("If-None-Match")
    # Flask routes HEAD to this view too: it is a GET whose body werkzeug drops.
    if request.method in ("GET", "HEAD"):
        if if_match or if_none_match:
            unchanged = directory.unchanged_version(
                kind, id, if_match=if_match or None, if_none_match=if_none_match or None
            )
            if unchanged is not None:
                return Response(status=304, headers={"ETag": unchanged})
        attributes, excluded = _projection(request.args)
        resource = directory.get(
            kind, id, base_url(), with_members=wants_members(kind, attributes, excluded)
        )
        return _resource_response(resource, kind, attributes=attributes, excluded=excluded)
    if request.method == "PUT":
        attributes, excluded = _projection(request.args)
        replaced = directory.replace(
            kind,
            id,
            read_json(),
            base_url(),
            if_match=if_match,
            if_none_match=if_none_match,
            context=request_context(200),
            with_members=wants_members(kind, attributes, excluded),
        )
        _report_skipped(kind, id, [], replaced.skipped_members)
        return _resource_response(replaced.resource, kind, attributes=attributes, excluded=excluded)
    if request.method == "PATCH":
        attributes, excluded = _projection(request.args)
        # Entra's documented answers: a user PATCH returns the resource (A5), a group PATCH
        # 204 without the member list (A11-A13) unless the client asked for attributes.
        bare = kind == constants.GROUP_TYPE and attributes is None and excluded is None
        outcome = directory.patch(
            kind,
            id,
            read_json(),
            base_url(),
            if_match=if_match,
            if_none_match=if_none_match,
            context=request_context(204 if bare else 200),
            with_members=not bare and wants_members(kind, attributes, excluded),
        )
        _report_skipped(kind, id, outcome.skipped, outcome.skipped_members)
        if bare:
            return scim_response(None, 204, {"ETag": outcome.resource["meta"]["version"]})
        return _resource_response(outcome.resource, kind, attributes=attributes, excluded=excluded)
    if request.method != "DELETE":
        raise MethodNotAllowed(valid_methods=["GET", "HEAD", "PUT", "PATCH", "DELETE"])
    directory.delete(
        kind, id, if_match=if_match, if_none_match=if_none_match, context=request_context(204)
    )
    return scim_response(None, 204)


def _report_skipped(kind: str, id: str, skipped: list[str], skipped_members: list[str]) -> None:
    """Put what a write skipped (unknown attributes, Entra Q22; member ids that name no user,
    Q20, Q23) in the server log and in the token's Connection status on the control panel,
    each cut as an error's detail cuts what it repeats (a member id may be 5,000 characters)."""
    if not skipped and not skipped_members:
        return
    skipped = [errors.shortened(name) for name in skipped]
    skipped_members = [errors.shortened(member_id) for member_id in skipped_members]
    log.info(
        "%s %s %s skipped unknown attributes %s and member ids that name no user %s",
        request.method,
        kind,
        id,
        skipped,
        skipped_members,
    )
    g.scim_event = {"skipped": skipped, "skipped_members": skipped_members}


def _query(
    *,
    filter_text: str | None,
    sort_by: str | None,
    sort_order: str | None,
    start_index: object,
    count: object,
    attributes: str | None,
    excluded: str | None,
) -> Query:
    settings = services().scim
    return Query(
        filter=parse_query_filter(filter_text, settings.max_filter_length),
        sort_by=parse_attr_path(sort_by, "sortBy") if sort_by else None,
        ascending=parse_sort_order(sort_order),
        page=parse_paging(start_index, count, max_results=settings.max_results),  # type: ignore[arg-type]
        attributes=parse_attribute_list(attributes) if attributes else None,
        excluded=parse_attribute_list(excluded, EXCLUDED) if excluded else None,
    )


def _list(kind: str, query: Query) -> Response:
    result = services().directory.query(kind, query, base_url())
    g.scim_event = {"operation": "query", "resourceType": kind, "matched": result.total}
    return scim_response(list_response(result.resources, result.total, result.start_index))


def _projection(args) -> tuple[list | None, list | None]:
    attributes = args.get("attributes")
    excluded = args.get(EXCLUDED)
    return (
        parse_attribute_list(attributes) if attributes else None,
        parse_attribute_list(excluded, EXCLUDED) if excluded else None,
    )


def _resource_response(
    resource: dict,
    kind: str,
    *,
    status: int = 200,
    location: bool = False,
    attributes: list | None = None,
    excluded: list | None = None,
) -> Response:
    headers = {"ETag": resource["meta"]["version"]}
    if location:
        headers["Location"] = resource["meta"]["location"]
    body = project(resource, RESOURCE_TYPES[kind], attributes, excluded)
    return scim_response(body, status, headers)
