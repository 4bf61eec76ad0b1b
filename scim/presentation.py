"""Turn a stored document into the SCIM resource a client reads.

The repository keeps bare documents: no relations, no URLs. A client sees a group's
``members`` (with ``display`` kept from each user's current name), a user's ``groups``,
``meta.location`` and ``$ref`` built from the Tenant URL, keys in a readable order, and never
``password``. Everything is read through a :class:`storage.repository.Reader`, so the same
code serves a plain read and a read inside a transaction.
"""

from __future__ import annotations

from collections.abc import Iterable

from scim import constants
from scim.definitions import GROUP_RESOURCE, RESOURCE_TYPES, USER_RESOURCE
from storage.repository import Reader

# Where a stored password hash lives; "password" itself is write-only (RFC 7643 §4.1).
PASSWORD = "password"


def present(
    reader: Reader,
    document: dict,
    base_url: str,
    *,
    with_members: bool = True,
    groups: list[dict] | None = None,
) -> dict:
    """The stored document as a SCIM resource: relations, location, no password.

    :param base_url: the SCIM base (Tenant URL) for ``meta.location`` and ``$ref``.
    :param with_members: False skips loading a group's members (Entra Q9).
    :param groups: a user's group documents, when the caller knows them (a user just
        created has none); read from ``reader`` otherwise.
    """
    document = dict(document)
    document.pop(PASSWORD, None)
    kind = document["meta"]["resourceType"]
    resource = RESOURCE_TYPES[kind]
    if kind == constants.GROUP_TYPE and with_members:
        document = with_member_objects(reader, document, base_url)
    elif kind == constants.USER_TYPE:
        if groups is None:
            groups = reader.group_documents_of([document["id"]])[document["id"]]
        if groups:
            document["groups"] = _group_objects(groups, base_url)
    meta = dict(document["meta"])
    meta["location"] = f"{base_url}{resource.endpoint}/{document['id']}"
    document["meta"] = meta
    return _ordered(document)


def with_member_objects(reader: Reader, document: dict, base_url: str) -> dict:
    """A copy of a group document with its ``members`` filled in from the relation."""
    member_ids = reader.members(document["id"])
    document = dict(document)
    document["members"] = member_objects(reader, member_ids, base_url)
    return document


def member_objects(reader: Reader, user_ids: list[str], base_url: str) -> list[dict]:
    """Member entries, with ``display`` kept from each user's current name.

    An empty ``base_url`` leaves out ``$ref`` (for matching members against a filter).
    """
    members = []
    for user in existing_documents(reader, constants.USER_TYPE, user_ids):
        user_id = user["id"]
        member = {"value": user_id, "type": constants.USER_TYPE, "display": _user_display(user)}
        if base_url:
            member["$ref"] = f"{base_url}{USER_RESOURCE.endpoint}/{user_id}"
        members.append(member)
    return members


def _group_objects(groups: list[dict], base_url: str) -> list[dict]:
    """A user's ``groups`` entries (RFC 7643 §4.1.2: read-only, direct membership only)."""
    return [
        {
            "value": group["id"],
            "$ref": f"{base_url}{GROUP_RESOURCE.endpoint}/{group['id']}",
            "display": group.get("displayName", ""),
            "type": "direct",
        }
        for group in groups
    ]


def existing_documents(reader: Reader, kind: str, ids: Iterable[str]) -> list[dict]:
    """The documents with these ids, in order, skipping any that no longer exist."""
    return reader.get_many(kind, list(ids))


def _user_display(user: dict) -> str:
    """The name a member entry shows: displayName, else userName."""
    return user.get("displayName") or user.get("userName", "")


def _ordered(document: dict) -> dict:
    """Keys in a readable order: schemas, id, externalId, core, extensions, meta."""
    head = ["schemas", "id", "externalId"]
    ordered = {key: document[key] for key in head if key in document}
    for key, value in document.items():
        if key not in ordered and key != "meta" and not key.startswith("urn:"):
            ordered[key] = value
    for key, value in document.items():
        if key.startswith("urn:"):
            ordered[key] = value
    ordered["meta"] = document["meta"]
    return ordered
