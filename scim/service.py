"""The SCIM service: what each request means for the directory, over plain dicts.

Knows SCIM, not Flask and not TinyDB. The blueprints turn a request into one of these calls
and the result into a response; the repository (``storage``) keeps the documents. Every
write is one repository transaction: the change is computed on a copy, validated whole, and
only then written, so a failed request changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice

from werkzeug.security import generate_password_hash

from scim import constants, errors
from scim.definitions import GROUP_RESOURCE, RESOURCE_TYPES, USER_RESOURCE, ResourceTypeDef
from scim.filter import (
    Filter,
    equality_terms,
    matches,
    matches_element,
    parse_filter,
    validate,
)
from scim.pagination import Page, sort_documents
from scim.patch import MemberChange, apply_patch
from scim.paths import AttrPath
from scim.projection import project
from scim.schemas import load_resource
from scim.schemas.patch import load_patch_request
from storage import errors as storage_errors
from storage.repository import Index, Reader, Repository, Transaction

# The lookups Entra's matching queries need (A2, A10), answered without a scan. userName and
# group displayName are unique and compared with one folding rule, str.casefold (Q10, Q11);
# externalId is not unique (Q11) and is caseExact (RFC 7643 §3.1).
INDEXES = [
    Index(constants.USER_TYPE, "userName", unique=True, fold=str.casefold),
    Index(constants.USER_TYPE, "externalId"),
    Index(constants.GROUP_TYPE, "displayName", unique=True, fold=str.casefold),
    Index(constants.GROUP_TYPE, "externalId"),
]

_INDEXED = {(index.kind, index.field) for index in INDEXES}

# Where a stored password hash lives; "password" itself is write-only (RFC 7643 §4.1).
_PASSWORD = "password"


@dataclass(frozen=True)
class Query:
    """A list or search request, already parsed (RFC 7644 §3.4.2)."""

    filter: Filter | None = None
    sort_by: AttrPath | None = None
    ascending: bool = True
    page: Page = Page(start_index=1, count=None)
    attributes: list[AttrPath] | None = None
    excluded: list[AttrPath] | None = None


@dataclass(frozen=True)
class QueryResult:
    """One page of matches, and how many matched in all."""

    resources: list[dict]
    total: int
    start_index: int


@dataclass(frozen=True)
class PatchOutcome:
    """The resource after a PATCH, and the attributes skipped as unknown (Entra Q22)."""

    resource: dict
    skipped: list[str]
    changed: bool
    # What the PATCH did, for the activity log: "update", "disable", "enable",
    # "add member", "remove member" (empty when nothing changed).
    operations: list[str]


class Directory:
    """Users and groups as SCIM resources, over a repository.

    :param base_url: the SCIM base (Tenant URL) used for ``meta.location`` and ``$ref``;
        callers pass it per call because it can depend on the request.
    """

    def __init__(self, repository: Repository, *, max_results: int = 1000) -> None:
        self.repository = repository
        self.max_results = max_results

    # -- reads -------------------------------------------------------------------------

    def get(self, kind: str, id: str, base_url: str, *, with_members: bool = True) -> dict:
        """The resource with ``id``, with members or groups and ``meta.location``.

        :raises errors.NotFound:
        """
        try:
            document = self.repository.get(kind, id)
        except storage_errors.NotFound:
            raise errors.NotFound(f"{kind} {id!r} not found") from None
        return self._present(document, base_url, with_members=with_members)

    def version(self, kind: str, id: str) -> str:
        """The current ``meta.version`` of a resource (for If-Match / If-None-Match)."""
        try:
            return self.repository.get(kind, id)["meta"]["version"]
        except storage_errors.NotFound:
            raise errors.NotFound(f"{kind} {id!r} not found") from None

    def query(self, kind: str, query: Query, base_url: str) -> QueryResult:
        """Filter, sort and page the resources of ``kind`` (RFC 7644 §3.4.2).

        ``totalResults`` counts every match before the page is cut.
        """
        resource = RESOURCE_TYPES[kind]
        if query.filter is not None:
            validate(query.filter, resource)  # a bad filter is a 400 even with nothing to test
        page = query.page
        count = self.max_results if page.count is None else min(page.count, self.max_results)
        start = page.start_index
        needs_members = kind == constants.GROUP_TYPE and (
            _mentions(query.filter, "members") or _mentions_sort(query.sort_by, "members")
        )
        if query.filter is None and query.sort_by is None:
            # A plain listing (Entra's account discovery, A16) reads only the page it returns.
            total = self.repository.count(kind)
            # A startIndex past the end is an empty page; checked first because islice
            # refuses indices above sys.maxsize, and startIndex is any integer the client sent.
            documents = (
                list(islice(self.repository.all(kind), start - 1, start - 1 + count))
                if start <= total
                else []
            )
        else:
            candidates = self._candidates(kind, query.filter, resource)
            if needs_members:
                candidates = [self._with_members(doc, base_url) for doc in candidates]
            if query.filter is not None:
                candidates = [doc for doc in candidates if matches(query.filter, doc, resource)]
            if query.sort_by is not None:
                candidates = sort_documents(candidates, query.sort_by, query.ascending, resource)
            total = len(candidates)
            documents = candidates[start - 1 : start - 1 + count]
        with_members = wants_members(kind, query.attributes, query.excluded)
        resources = [
            project(
                self._present(doc, base_url, with_members=with_members),
                resource,
                query.attributes,
                query.excluded,
            )
            for doc in documents
        ]
        return QueryResult(resources=resources, total=total, start_index=start)

    # -- writes ------------------------------------------------------------------------

    def create(
        self, kind: str, payload: object, base_url: str, *, context: dict | None = None
    ) -> dict:
        """Create a resource from a POST body (RFC 7644 §3.3).

        :param context: request facts (time, token, client, request id) for the activity
            event committed with the change.
        :raises errors.Uniqueness: when userName / group displayName is taken (Q11).
        """
        resource = RESOURCE_TYPES[kind]
        document = load_resource(resource, payload)
        members = _member_ids(document.pop("members", None))
        _hash_password(document, previous=None)
        with self.repository.transaction() as tx:
            self._check_members(tx, members)
            stored = _write(tx.insert, kind, document)
            if members:
                tx.add_members(stored["id"], members)
            stored = tx.get(kind, stored["id"])
            _note(tx, context, "create", stored)
        return self._present(stored, base_url)

    def replace(
        self,
        kind: str,
        id: str,
        payload: object,
        base_url: str,
        *,
        if_match: str | None = None,
        context: dict | None = None,
    ) -> dict:
        """Replace a resource with a PUT body (RFC 7644 §3.5.1).

        Read-only attributes in the body are ignored and the id comes from the URL. A PUT
        without ``password`` keeps the stored one.
        """
        resource = RESOURCE_TYPES[kind]
        document = load_resource(resource, payload)
        members = _member_ids(document.pop("members", None))
        with self.repository.transaction() as tx:
            current = _get(tx, kind, id)
            _check_version(current, if_match)
            if _PASSWORD not in document and _PASSWORD in current:
                document[_PASSWORD] = current[_PASSWORD]
            else:
                _hash_password(document, previous=current.get(_PASSWORD))
            if kind == constants.GROUP_TYPE:
                self._check_members(tx, members)
            _write(tx.replace, kind, id, document, if_version=current["meta"]["version"])
            if kind == constants.GROUP_TYPE and members is not None:
                tx.clear_members(id)
                tx.add_members(id, members)
            stored = tx.get(kind, id)
            _note(tx, context, "update", stored)
        return self._present(stored, base_url)

    def patch(
        self,
        kind: str,
        id: str,
        body: object,
        base_url: str,
        *,
        if_match: str | None = None,
        context: dict | None = None,
    ) -> PatchOutcome:
        """Apply a PatchOp (RFC 7644 §3.5.2) atomically: all operations or none.

        The operations run on a copy; the whole result is validated with the resource schema
        (which also coerces Entra's ``"False"`` and bare ``manager``), member ids are checked,
        and only then is anything written.
        """
        resource = RESOURCE_TYPES[kind]
        patch_operations = load_patch_request(body)
        with self.repository.transaction() as tx:
            current = _get(tx, kind, id)
            _check_version(current, if_match)
            result = apply_patch(_editable(current), patch_operations, resource)
            document = load_resource(resource, result.document)
            document.pop("members", None)
            _hash_password(document, previous=current.get(_PASSWORD))
            before = load_resource(resource, _editable(current))
            operations = _describe_change(before, document)
            if operations:
                _write(tx.replace, kind, id, document, if_version=current["meta"]["version"])
            if result.member_changes:
                operations += self._apply_member_changes(tx, id, result.member_changes)
            stored = tx.get(kind, id)
            for operation in operations:
                _note(tx, context, operation, stored)
        return PatchOutcome(
            resource=self._present(stored, base_url),
            skipped=result.skipped,
            changed=bool(operations),
            operations=operations,
        )

    def delete(
        self, kind: str, id: str, *, if_match: str | None = None, context: dict | None = None
    ) -> dict:
        """Delete a resource; a user leaves every group it was in (RFC 7644 §3.6).

        Returns the deleted document.
        """
        with self.repository.transaction() as tx:
            current = _get(tx, kind, id)
            _check_version(current, if_match)
            tx.delete(kind, id)
            _note(tx, context, "delete", current)
        return current

    # -- helpers -----------------------------------------------------------------------

    def _candidates(self, kind: str, expr: Filter | None, resource: ResourceTypeDef) -> list[dict]:
        """Documents that may match: from an index when the filter pins one, else all."""
        if expr is not None:
            for name, value in equality_terms(expr, resource):
                if name == "id":
                    return _existing(self.repository, kind, [value])
                if (kind, name) in _INDEXED:
                    ids = self.repository.find(kind, name, value)
                    return _existing(self.repository, kind, ids)
        return list(self.repository.all(kind))

    def _check_members(self, reader: Reader, user_ids: Iterable[str] | None) -> None:
        """Refuse unknown ids and groups as members, naming the id (nothing is applied)."""
        for user_id in user_ids or ():
            if reader.exists(constants.USER_TYPE, user_id):
                continue
            if reader.exists(constants.GROUP_TYPE, user_id):
                raise errors.InvalidValue(
                    f"members: {user_id!r} is a group; nested groups are not supported, "
                    "members must be users"
                )
            raise errors.InvalidValue(f"members: no user has id {user_id!r}")

    def _apply_member_changes(
        self, tx: Transaction, group_id: str, changes: list[MemberChange]
    ) -> list[str]:
        """Apply member adds and removals in order; returns "add member"/"remove member"."""
        added: list[str] = []
        removed: list[str] = []
        for change in changes:
            if change.action in ("add", "replace"):
                self._check_members(tx, change.ids)
        for change in changes:
            if change.action == "add":
                added += tx.add_members(group_id, list(change.ids))
            elif change.action == "remove":
                removed += tx.remove_members(group_id, list(change.ids))
            elif change.action == "clear":
                removed += tx.clear_members(group_id)
            elif change.action == "replace":
                wanted = list(dict.fromkeys(change.ids))
                removed += tx.remove_members(
                    group_id, [uid for uid in tx.members(group_id) if uid not in wanted]
                )
                added += tx.add_members(group_id, wanted)
            elif change.action == "remove_matching":
                assert change.filter is not None
                members_attribute = GROUP_RESOURCE.schema.attribute("members")
                assert members_attribute is not None
                doomed = [
                    member["value"]
                    for member in self._member_objects(tx, tx.members(group_id), "")
                    if matches_element(change.filter, member, members_attribute)
                ]
                removed += tx.remove_members(group_id, doomed)
        return (["add member"] if added else []) + (["remove member"] if removed else [])

    def _present(self, document: dict, base_url: str, *, with_members: bool = True) -> dict:
        """The stored document as a SCIM resource: relations, location, no password."""
        document = dict(document)
        document.pop(_PASSWORD, None)
        kind = document["meta"]["resourceType"]
        resource = RESOURCE_TYPES[kind]
        if kind == constants.GROUP_TYPE and with_members:
            document = self._with_members(document, base_url)
        elif kind == constants.USER_TYPE:
            groups = self._group_objects(self.repository.groups_of(document["id"]), base_url)
            if groups:
                document["groups"] = groups
        meta = dict(document["meta"])
        meta["location"] = f"{base_url}{resource.endpoint}/{document['id']}"
        document["meta"] = meta
        return _ordered(document, resource)

    def _with_members(self, document: dict, base_url: str) -> dict:
        member_ids = self.repository.members(document["id"])
        document = dict(document)
        document["members"] = self._member_objects(self.repository, member_ids, base_url)
        return document

    def _member_objects(self, reader: Reader, user_ids: list[str], base_url: str) -> list[dict]:
        """Member entries, with ``display`` kept from each user's current name."""
        members = []
        for user_id in user_ids:
            try:
                user = reader.get(constants.USER_TYPE, user_id)
            except storage_errors.NotFound:
                continue
            member = {"value": user_id, "type": constants.USER_TYPE, "display": _user_display(user)}
            if base_url:
                member["$ref"] = f"{base_url}{USER_RESOURCE.endpoint}/{user_id}"
            members.append(member)
        return members

    def _group_objects(self, group_ids: list[str], base_url: str) -> list[dict]:
        groups = []
        for group_id in group_ids:
            try:
                group = self.repository.get(constants.GROUP_TYPE, group_id)
            except storage_errors.NotFound:
                continue
            groups.append(
                {
                    "value": group_id,
                    "$ref": f"{base_url}{GROUP_RESOURCE.endpoint}/{group_id}",
                    "display": group.get("displayName", ""),
                    "type": "direct",
                }
            )
        return groups


def _note(tx: Transaction, context: dict | None, operation: str, document: dict) -> None:
    """Commit an activity event with the change (no second fsync: same durable write)."""
    if context is None:
        return
    tx.note(
        {
            **context,
            "operation": operation,
            "resourceType": document["meta"]["resourceType"],
            "id": document["id"],
            "name": document.get("userName") or document.get("displayName"),
        }
    )


def _describe_change(before: dict, after: dict) -> list[str]:
    """Name a document change for the activity log; [] when nothing changed."""
    if before == after:
        return []
    was, now = before.get("active"), after.get("active")
    rest_before = {k: v for k, v in before.items() if k != "active"}
    rest_after = {k: v for k, v in after.items() if k != "active"}
    operations = []
    if was is not False and now is False:
        operations.append("disable")
    elif was is False and now is not False:
        operations.append("enable")
    if rest_before != rest_after or (not operations and was != now):
        operations.append("update")
    return operations


def _get(reader: Reader, kind: str, id: str) -> dict:
    try:
        return reader.get(kind, id)
    except storage_errors.NotFound:
        raise errors.NotFound(f"{kind} {id!r} not found") from None


def _existing(reader: Reader, kind: str, ids: Iterable[str]) -> list[dict]:
    found = []
    for id in ids:
        try:
            found.append(reader.get(kind, id))
        except storage_errors.NotFound:
            continue
    return found


def _write(method, *args, **kwargs) -> dict:
    """Call a repository write, turning its errors into SCIM errors."""
    try:
        return method(*args, **kwargs)
    except storage_errors.Conflict as exc:
        noun = "user" if exc.kind == constants.USER_TYPE else "group"
        raise errors.Uniqueness(
            f"{exc.field} {exc.value!r} is already used by another {noun} (id {exc.holder}); "
            f"{exc.field} is unique, compared case-insensitively"
        ) from None
    except storage_errors.VersionMismatch as exc:
        raise errors.PreconditionFailed(
            f"{exc.kind} {exc.id!r} changed meanwhile: it is at version {exc.current}"
        ) from None


def _check_version(current: dict, if_match: str | None) -> None:
    """RFC 7644 §3.14: a stale If-Match is a 412 and changes nothing."""
    if if_match is None:
        return
    version = current["meta"]["version"]
    candidates = [tag.strip() for tag in if_match.split(",")]
    if "*" in candidates or version in candidates:
        return
    raise errors.PreconditionFailed(
        f"If-Match {if_match} does not match the current version {version}; "
        "read the resource again and retry"
    )


def _editable(document: dict) -> dict:
    """The stored document without what the server owns (id, meta, relations)."""
    editable = {k: v for k, v in document.items() if k not in ("id", "meta", "groups", "members")}
    return editable


def _member_ids(members: list[dict] | None) -> list[str] | None:
    if members is None:
        return None
    return list(dict.fromkeys(member["value"] for member in members))


def _hash_password(document: dict, previous: str | None) -> None:
    """Keep only a salted hash of a password (RFC 7643 §4.1: never stored in clear)."""
    password = document.get(_PASSWORD)
    if password is None or password == previous:
        return
    document[_PASSWORD] = generate_password_hash(password)


def _user_display(user: dict) -> str:
    return user.get("displayName") or user.get("userName", "")


def _mentions(expr: Filter | None, attribute: str) -> bool:
    return expr is not None and attribute.casefold() in repr(expr).casefold()


def _mentions_sort(path: AttrPath | None, attribute: str) -> bool:
    return path is not None and path.attribute.casefold() == attribute.casefold()


def wants_members(
    kind: str, attributes: list[AttrPath] | None, excluded: list[AttrPath] | None
) -> bool:
    """Whether a group read must load members (skipped for excludedAttributes=members, Q9)."""
    if kind != constants.GROUP_TYPE:
        return False
    if attributes is not None:
        return any(path.attribute.casefold() == "members" for path in attributes)
    if excluded is not None:
        return not any(
            path.attribute.casefold() == "members" and path.sub_attribute is None
            for path in excluded
        )
    return True


def _ordered(document: dict, resource: ResourceTypeDef) -> dict:
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


def parse_query_filter(text: str | None, max_length: int) -> Filter | None:
    """Parse a ``filter`` parameter; absent or blank means no filter."""
    if text is None or not text.strip():
        return None
    return parse_filter(text, max_length=max_length)
