"""Directory: the users and groups Entra provisioned, read-only by design (Entra Q20).

Entra is the source of truth. A local edit would be overwritten on Entra's next cycle, and a
local delete breaks Entra's link to the object (``InvalidAnchor`` on every cycle until an
admin restarts provisioning), so these pages only read, through the SCIM service.
"""

from __future__ import annotations

import json

from flask import Blueprint, abort, render_template, request

from admin import pages
from admin.context import context
from admin.views_activity import events_about
from scim import constants, errors
from scim.api.context import base_url
from scim.pagination import Page
from scim.paths import AttrPath, parse_attr_path
from scim.service import Query, QueryResult, parse_query_filter

PAGE_SIZE = 25
MEMBERS_PAGE_SIZE = 100  # a group's members listed on its page at a time
_ENTERPRISE_LABEL = "enterprise"

# What the search box looks in, per resource type.
_SEARCHED = {
    constants.USER_TYPE: (
        "userName",
        "displayName",
        "name.formatted",
        "emails.value",
        "externalId",
    ),
    constants.GROUP_TYPE: ("displayName", "externalId"),
}
_SORTED_BY = {constants.USER_TYPE: "userName", constants.GROUP_TYPE: "displayName"}


def register(blueprint: Blueprint) -> None:
    """Add the directory routes."""
    blueprint.add_url_rule("/directory/users", "users", users)
    blueprint.add_url_rule("/directory/users/<id>", "user", user)
    blueprint.add_url_rule("/directory/groups", "groups", groups)
    blueprint.add_url_rule("/directory/groups/<id>", "group", group)


def users() -> str:
    """Users: search and paging."""
    text, number, result = _search(constants.USER_TYPE)
    return render_template("admin/users.html", q=text, number=number, result=result, size=PAGE_SIZE)


def groups() -> str:
    """Groups: search and paging, each with its number of members.

    The members themselves are not read (a group of 10,000 took 0.1 s to list as member
    objects with their display names, per group on the page): only their ids are counted.
    """
    text, number, result = _search(constants.GROUP_TYPE, excluded=[parse_attr_path("members")])
    repository = context().services.repository
    counts = {group["id"]: len(repository.members(group["id"])) for group in result.resources}
    return render_template(
        "admin/groups.html",
        q=text,
        number=number,
        result=result,
        size=PAGE_SIZE,
        member_counts=counts,
    )


def user(id: str) -> str:
    """One user: attributes, groups, created, last modified, recent events."""
    resource = _get(constants.USER_TYPE, id)
    return render_template(
        "admin/user.html",
        resource=resource,
        rows=attribute_rows(resource),
        events=events_about(context(), id),
    )


def group(id: str) -> str:
    """One group: attributes, members a page at a time, created, last modified, recent events.

    A page of members, by name: all 10,000 of a big group made a page of 950 KB that took
    0.8 s to build.
    """
    resource = _get(constants.GROUP_TYPE, id)
    members = sorted(
        resource.get("members") or [],
        key=lambda member: str(member.get("display") or member.get("value") or "").casefold(),
    )
    number = pages.page_number(request.args.get("page"))
    start = (number - 1) * MEMBERS_PAGE_SIZE
    return render_template(
        "admin/group.html",
        resource=resource,
        rows=attribute_rows(resource),
        events=events_about(context(), id),
        members=QueryResult(
            members[start : start + MEMBERS_PAGE_SIZE], len(members), start_index=start + 1
        ),
        number=number,
        size=MEMBERS_PAGE_SIZE,
    )


def search_filter(kind: str, text: str) -> str | None:
    """A SCIM filter finding ``text`` in the searched attributes (or the exact id)."""
    if not text:
        return None
    value = json.dumps(text, ensure_ascii=False)  # a SCIM compValue is a JSON string
    terms = [f"{name} co {value}" for name in _SEARCHED[kind]]
    return " or ".join(terms + [f"id eq {value}"])


def attribute_rows(resource: dict) -> list[tuple[str, str]]:
    """The resource's attributes as (label, text) rows, relations and meta left out."""
    rows: list[tuple[str, str]] = []
    for key, value in resource.items():
        if key in ("schemas", "meta", "groups", "members"):
            continue
        if key.startswith("urn:") and isinstance(value, dict):
            prefix = _ENTERPRISE_LABEL if key == constants.ENTERPRISE_USER else key
            for name, inner in value.items():
                rows.extend(_rows(f"{prefix}: {name}", inner))
        else:
            rows.extend(_rows(key, value))
    return rows


def _search(kind: str, excluded: list[AttrPath] | None = None) -> tuple[str, int, QueryResult]:
    text = request.args.get("q", "").strip()[:200]
    number = pages.page_number(request.args.get("page"))
    settings = context().services.scim
    try:
        expression = parse_query_filter(search_filter(kind, text), settings.max_filter_length)
    except errors.ScimError:
        expression = None  # too long for a filter: show everything rather than fail
    query = Query(
        filter=expression,
        sort_by=parse_attr_path(_SORTED_BY[kind]),
        page=Page(start_index=(number - 1) * PAGE_SIZE + 1, count=PAGE_SIZE),
        excluded=excluded,
    )
    return text, number, context().services.directory.query(kind, query, base_url())


def _get(kind: str, id: str) -> dict:
    try:
        return context().services.directory.get(kind, id, base_url())
    except errors.NotFound:
        abort(404, f"There is no {kind.lower()} with id {id!r}; it may have been deleted.")


def _rows(label: str, value: object) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [(f"{label}.{name}", _text(inner)) for name, inner in value.items()]
    if isinstance(value, list):
        return [(label, "; ".join(_text(item) for item in value))]
    return [(label, _text(value))]


def _text(value: object) -> str:
    if isinstance(value, dict):
        main = value.get("value", value.get("display", ""))
        notes = [f"{k}: {_text(v)}" for k, v in value.items() if k not in ("value", "$ref")]
        return f"{main} ({', '.join(notes)})" if notes and main != "" else ", ".join(notes)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
