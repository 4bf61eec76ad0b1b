"""Turn a stored document into the SCIM resource a client reads.

The repository keeps bare documents: no relations, no URLs. A client sees a group's
``members`` (with ``display`` as the client sent it, else each user's current name), a
user's ``groups``, ``meta.location`` and ``$ref`` built from the Tenant URL, keys in a
readable order, and never ``password`` or :data:`MEMBER_DISPLAYS`. Everything is read
through a :class:`storage.repository.Reader`, so the same code serves a plain read and a read
inside a transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from scim import constants
from scim.definitions import GROUP_RESOURCE, RESOURCE_TYPES, USER_RESOURCE
from scim.paths import AttrPath, resolve
from storage.repository import Reader

# Where a stored password hash lives; "password" itself is write-only (RFC 7643 §4.1).
PASSWORD = "password"

# Where a group document keeps the displays clients sent with members (Entra Q23): user id
# -> display, only for members sent with one. In the document, not the member relation, so
# Entra's member adds (ids only) cost what they did, and backups, restores, migrations and
# both stores carry it as they carry any document. No attribute path can name it (RFC 7644
# §3.10: a name starts with a letter), so no filter, sortBy or PATCH reaches it.
MEMBER_DISPLAYS = "_memberDisplays"

# What a resource shows that its stored document lacks, made here for each read: a group's
# members and a user's groups (the member relation), meta.location (the request's URL), and
# a user's meta.version, which covers its groups (version_of).
MEMBERS = "members"
GROUPS = "groups"
LOCATION = "location"
VERSION = "version"


def present(
    reader: Reader,
    document: dict,
    base_url: str,
    *,
    with_members: bool = True,
    groups: list[dict] | None = None,
) -> dict:
    """The stored document as a SCIM resource: relations, location, no password and no
    :data:`MEMBER_DISPLAYS`.

    :param base_url: the SCIM base (Tenant URL) for ``meta.location`` and ``$ref``.
    :param with_members: False skips loading a group's members (Entra Q9).
    :param groups: a user's group documents, when the caller knows them (a user just
        created has none); read from ``reader`` otherwise.
    """
    document = dict(document)
    document.pop(PASSWORD, None)
    kind = document["meta"]["resourceType"]
    if kind == constants.GROUP_TYPE and with_members:
        document = with_member_objects(reader, document, base_url)
    elif kind == constants.USER_TYPE:
        document.pop(GROUPS, None)  # what derived_documents() added for a filter, if anything
        if groups is None:
            groups = reader.group_documents_of([document["id"]])[document["id"]]
        version = document["meta"][VERSION]
        if groups:
            document["groups"] = _group_objects(groups, base_url)
            document["meta"] = {**document["meta"], VERSION: _user_version(document, groups)}
        elif version != _stored_version(version):  # a filter's copy; the user left its groups
            document["meta"] = {**document["meta"], VERSION: _stored_version(version)}
    document.pop(MEMBER_DISPLAYS, None)  # shown in the members, if the client reads them
    document["meta"] = {**document["meta"], LOCATION: location(document, base_url)}
    return _ordered(document)


def version_of(reader: Reader, document: dict, groups: list[dict] | None = None) -> str:
    """The ``meta.version`` (and ETag) a client sees for a stored document (see
    :func:`_user_version`); what If-Match and If-None-Match are compared with. ``groups``:
    a user's group documents, if already read."""
    if document["meta"]["resourceType"] != constants.USER_TYPE:
        return document["meta"]["version"]
    if groups is None:
        groups = reader.group_documents_of([document["id"]])[document["id"]]
    return _user_version(document, groups) if groups else document["meta"]["version"]


def _user_version(user: dict, groups: list[dict]) -> str:
    """A user's version with what its ``groups`` show: W/"3" becomes W/"3.<digest>".

    A user's ``groups`` come from the member relation and each group's name, which change
    without a write to the user; so the version a client sees covers them too, or a GET with
    If-None-Match would answer 304 for a user who has joined, left or seen a group renamed.
    (A group's ``members[].display`` is the other way round: the service writes a new group
    version when the name of a member it shows by that name changes, :func:`member_display`.)

    ``user`` may be a copy :func:`derived_documents` made for a filter, whose version is
    already the shown one: the digest is added to the stored version, never twice.
    """
    digest = hashlib.blake2b(digest_size=6)
    for group in groups:
        digest.update(f"{group['id']}\0{group.get('displayName', '')}\0".encode())
    version = _stored_version(user["meta"]["version"])
    return f'{version[:-1]}.{digest.hexdigest()}"'


def _stored_version(version: str) -> str:
    """The stored version in a shown one: W/"3.<digest>" is W/"3" (a stored version is a
    number, :func:`storage.values.version_tag`, and has no dot)."""
    head, dot, _ = version.partition(".")
    return f'{head}"' if dot else version


def derived_reads(kind: str, paths: list[AttrPath]) -> frozenset[str]:
    """Which derived attributes (:data:`MEMBERS`, :data:`GROUPS`, :data:`LOCATION`,
    :data:`VERSION`) reading ``paths`` on a resource of ``kind`` needs: a filter or sortBy on
    them must run on :func:`derived_documents`, since the store's documents do not hold them.

    A path to ``meta`` itself (``meta[location sw "https:"]``) may read the location and the
    version too. Only a user's version is derived: a group shows the one it stores.
    """
    resource = RESOURCE_TYPES[kind]
    needed = set()
    for path in paths:
        resolved = resolve(path, resource)
        if resolved is None or resolved.container is not None:
            continue
        name, sub = resolved.attribute.name, resolved.sub_attribute
        if name in (MEMBERS, GROUPS):
            needed.add(name)
        elif name == "meta":
            if sub is None or sub.name == LOCATION:
                needed.add(LOCATION)
            if (sub is None or sub.name == VERSION) and kind == constants.USER_TYPE:
                needed.add(VERSION)
    return frozenset(needed)


def derived_documents(
    reader: Reader, documents: list[dict], base_url: str, derived: frozenset[str]
) -> list[dict]:
    """Copies of ``documents`` with the ``derived`` attributes (:func:`derived_reads`) filled
    in as a client reads them, for a filter or sort to test; the documents are not changed.

    A user's groups (for ``groups`` and for its version) are read for all the documents at
    once (one statement on a database).
    """
    if MEMBERS in derived:
        documents = [
            with_member_objects(reader, document, base_url)
            if document["meta"]["resourceType"] == constants.GROUP_TYPE
            else document
            for document in documents
        ]
    if GROUPS in derived or VERSION in derived:
        users = [
            document["id"]
            for document in documents
            if document["meta"]["resourceType"] == constants.USER_TYPE
        ]
        groups = reader.group_documents_of(users) if users else {}
        documents = [
            _with_groups(document, groups[document["id"]], base_url, derived)
            if groups.get(document["id"])
            else document
            for document in documents
        ]
    if LOCATION in derived:
        documents = [
            {**document, "meta": {**document["meta"], LOCATION: location(document, base_url)}}
            for document in documents
        ]
    return documents


def _with_groups(user: dict, groups: list[dict], base_url: str, derived: frozenset[str]) -> dict:
    """A copy of a user in ``groups`` with what ``derived`` asks of them: its ``groups``
    entries, its shown version."""
    user = dict(user)
    if GROUPS in derived:
        user[GROUPS] = _group_objects(groups, base_url)
    if VERSION in derived:
        user["meta"] = {**user["meta"], VERSION: _user_version(user, groups)}
    return user


def location(document: dict, base_url: str) -> str:
    """The URL of the resource ``document`` stores (``meta.location``, RFC 7643 §3.1)."""
    resource = RESOURCE_TYPES[document["meta"]["resourceType"]]
    return f"{base_url}{resource.endpoint}/{document['id']}"


def with_member_objects(reader: Reader, document: dict, base_url: str) -> dict:
    """A copy of a group document with its ``members`` filled in from the relation."""
    member_ids = reader.members(document["id"])
    document = dict(document)
    document["members"] = member_objects(
        reader, member_ids, base_url, document.get(MEMBER_DISPLAYS, {})
    )
    return document


def member_objects(
    reader: Reader, user_ids: list[str], base_url: str, displays: dict[str, str]
) -> list[dict]:
    """Member entries, with ``display`` as the client sent it (the group's
    :data:`MEMBER_DISPLAYS`), else each user's current name.
    """
    members = []
    # Only what member_display() reads of each user.
    for user in reader.get_many_of(constants.USER_TYPE, user_ids, ["displayName", "userName"]):
        user_id = user["id"]
        display = displays.get(user_id) or member_display(user)
        ref = f"{base_url}{USER_RESOURCE.endpoint}/{user_id}"
        members.append(
            {"value": user_id, "type": constants.USER_TYPE, "display": display, "$ref": ref}
        )
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


def member_display(user: dict) -> str:
    """The name a member entry shows when the client sent none: displayName, else
    userName."""
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
