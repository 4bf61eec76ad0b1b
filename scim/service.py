"""The SCIM service: what each request means for the directory, over plain dicts.

Knows SCIM, not Flask and not TinyDB. The blueprints turn a request into one of these calls
and the result into a response; the repository (``storage``) keeps the documents. Every
write is one repository transaction: the change is computed on a copy, validated whole, and
only then written, so a failed request changes nothing. The whole of it (reads included) is
one re-runnable unit (:func:`storage.retry.run_transaction`): a transaction PostgreSQL
rolled back for a deadlock or a serialization failure runs again, and only a persistent one
reaches the client, as a 503.

Beside it: :mod:`scim.presentation` (document to resource), :mod:`scim.membership` (the
member relation) and :mod:`scim.activity` (what each write did).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

from werkzeug.security import generate_password_hash

from scim import activity, constants, errors
from scim.definitions import GROUP_RESOURCE, RESOURCE_TYPES, USER_RESOURCE, ResourceTypeDef
from scim.filter import Filter, equality_terms, matcher, parse_filter, top_level_paths
from scim.membership import apply_member_changes, existing_displays, known_members, with_displays
from scim.pagination import Page, check_sort_by, sort_documents, sort_key, sort_mixed
from scim.patch import apply_patch, blame_change, blame_operation
from scim.paths import AttrPath
from scim.presentation import (
    GROUPS,
    MEMBER_DISPLAYS,
    MEMBERS,
    PASSWORD,
    derived_documents,
    derived_reads,
    existing_documents,
    member_display,
    present,
    version_of,
)
from scim.projection import project, shows
from scim.queries import store_query
from scim.schemas import load_resource
from scim.schemas.patch import load_patch_request
from storage import errors as storage_errors
from storage.repository import Index, Reader, Repository, Transaction
from storage.retry import run_transaction
from storage.values import clone

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
class WriteOutcome:
    """The resource a POST or PUT left, and the member ids it skipped because they name no
    user (:mod:`scim.membership`), for the caller to report."""

    resource: dict
    skipped_members: list[str]


@dataclass(frozen=True)
class PatchOutcome:
    """The resource after a PATCH, and what it skipped: attributes unknown to the resource
    (Entra Q22), and member ids to add that name nothing (Q20, Q23)."""

    resource: dict
    skipped: list[str]
    skipped_members: list[str]
    changed: bool
    # What the PATCH did, for the activity log (names from scim.activity): "update",
    # "disable", "enable", "add member", "remove member" (empty when nothing changed).
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
            # A user's groups come with it: one read, one statement on a database.
            document, groups = self.repository.get_with_groups(kind, id)
        except storage_errors.NotFound:
            raise _not_found(kind, id) from None
        return present(
            self.repository, document, base_url, with_members=with_members, groups=groups
        )

    def version(self, kind: str, id: str) -> str:
        """The current ``meta.version`` of a resource (for If-Match / If-None-Match).

        :raises errors.NotFound:
        """
        try:
            document, groups = self.repository.get_with_groups(kind, id)  # one read, as get()
        except storage_errors.NotFound:
            raise _not_found(kind, id) from None
        return version_of(self.repository, document, groups)

    def unchanged_version(
        self, kind: str, id: str, *, if_match: str | None, if_none_match: str | None
    ) -> str | None:
        """A read's preconditions (RFC 7232 §6): If-Match first, then If-None-Match. Returns
        the current version when If-None-Match matches it (the answer is then 304 Not
        Modified), else None.

        :raises errors.PreconditionFailed: If-Match does not match (RFC 7232 §3.1).
        :raises errors.NotFound:
        """
        version = self.version(kind, id)
        _require_match(if_match, version)
        if if_none_match is not None and none_match_hit(if_none_match, version):
            return version
        return None

    def query(self, kind: str, query: Query, base_url: str) -> QueryResult:
        """Filter, sort and page the resources of ``kind`` (RFC 7644 §3.4.2).

        ``totalResults`` counts every match before the page is cut. The repository answers the
        whole query (:mod:`scim.queries`), unless an index pins the few candidates (Entra's
        matching lookups, A2, A10) or the filter or sortBy reads what the stored documents
        lack (a group's members, a user's groups, ``meta.location``, a user's
        ``meta.version``, which covers its groups): then the documents are completed as a
        client sees them and filtered and sorted here, on every backend.
        """
        resource = RESOURCE_TYPES[kind]
        if query.sort_by is not None:
            check_sort_by(query.sort_by, resource)
        start, count = self._window(query.page)
        predicate = matcher(query.filter, resource) if query.filter is not None else None
        pinned = (
            self._pinned(kind, query.filter, resource, with_groups=_reads_groups(kind, query))
            if query.filter is not None
            else None
        )
        if pinned is None and not _derived(kind, query):
            key = sort_key(query.sort_by, resource) if query.sort_by is not None else None
            found = self.repository.query(
                kind,
                store_query(
                    query.filter,
                    predicate,
                    query.sort_by,
                    key,
                    query.ascending,
                    resource,
                    # startIndex is any integer the client sent; a store's offset is 64 bits.
                    offset=min(start - 1, sys.maxsize),
                    limit=count,
                    attributes=query.attributes,
                ),
            )
            total, page = found.total, found.documents
        else:
            candidates = pinned.documents if pinned is not None else None
            matched = self._matching(kind, query, base_url, candidates, predicate)
            if query.sort_by is not None:
                matched = sort_documents(matched, query.sort_by, query.ascending, resource)
            total, page = len(matched), matched[start - 1 : start - 1 + count]
        if pinned is None:
            # Documents may be the stored ones, passed over in place: copy the page. What an
            # index pinned are copies already.
            page = [clone(doc) for doc in page]
        if pinned is not None and pinned.groups is not None:
            groups = pinned.groups
        else:
            groups = self._groups_of_users(page, query)
        resources = [self._resource(kind, doc, base_url, query, groups) for doc in page]
        return QueryResult(resources=resources, total=total, start_index=start)

    def search_all(self, query: Query, base_url: str) -> QueryResult:
        """A query across every resource type: ``POST /.search`` at the root (RFC 7644 §3.4.3).

        Users, then groups, unless sorted; each resource carries its own ``schemas``. A filter
        or ``sortBy`` naming an attribute one type lacks matches nothing of that type, or sorts
        it last; a comparison one type cannot make is still a 400.
        """
        if query.sort_by is not None:
            for resource in RESOURCE_TYPES.values():
                check_sort_by(query.sort_by, resource)
        start, count = self._window(query.page)
        matched = [
            (RESOURCE_TYPES[kind], document)
            for kind in RESOURCE_TYPES
            for document in self._matching(kind, query, base_url)
        ]
        if query.sort_by is not None:
            matched = sort_mixed(matched, query.sort_by, query.ascending)
        page = [
            (resource, clone(document))
            for resource, document in matched[start - 1 : start - 1 + count]
        ]
        groups = self._groups_of_users([document for _, document in page], query)
        resources = [
            self._resource(resource.name, document, base_url, query, groups)
            for resource, document in page
        ]
        return QueryResult(resources=resources, total=len(matched), start_index=start)

    # -- writes ------------------------------------------------------------------------

    def create(
        self,
        kind: str,
        payload: object,
        base_url: str,
        *,
        context: dict | None = None,
        with_members: bool = True,
    ) -> WriteOutcome:
        """Create a resource from a POST body (RFC 7644 §3.3).

        A user sent without ``active`` is stored without it: RFC 7643 §4.1.1 gives it no
        default, Entra and Okta always send it, and single sign-on (``admin.sso_access``)
        lets in only ``active: true``, so a default of true would let in a user no client
        said is active, and one of false would answer with a value the client never sent.

        :param context: request facts (time, token, client, request id) for the activity
            event committed with the change.
        :param with_members: build a group's member list for the result (not when the client
            excluded it).
        :raises errors.Uniqueness: when userName / group displayName is taken (Q11).
        """
        resource = RESOURCE_TYPES[kind]
        document = load_resource(resource, payload)
        sent = document.pop("members", None)
        _hash_password(document, previous=None)

        def create_in(tx: Transaction) -> tuple[dict, list[str]]:
            members = known_members(tx, sent)
            stored = _write(tx.insert, kind, with_displays(document, members.displays))
            if members.ids:
                tx.add_members(stored["id"], members.ids)
            stored = tx.get(kind, stored["id"])
            activity.note(tx, context, activity.CREATE, stored)
            return stored, members.skipped

        stored, skipped = run_transaction(self.repository, create_in)
        # A new user is in no group yet (groups is read-only; Entra adds it to them later).
        return WriteOutcome(
            present(self.repository, stored, base_url, with_members=with_members, groups=[]),
            skipped,
        )

    def replace(
        self,
        kind: str,
        id: str,
        payload: object,
        base_url: str,
        *,
        if_match: str | None = None,
        if_none_match: str | None = None,
        context: dict | None = None,
        with_members: bool = True,
    ) -> WriteOutcome:
        """Replace a resource with a PUT body (RFC 7644 §3.5.1).

        Read-only attributes in the body are ignored and the id comes from the URL. A PUT
        without ``password`` keeps the stored one; a group's PUT without ``members`` keeps
        its members and their displays, and one with ``members`` skips (and returns) the ids
        that name nothing, as a PATCH ``replace`` of members does (:mod:`scim.membership`).

        Okta sends a PUT of the whole resource where Entra sends a PATCH, so a PUT is
        recorded as the PATCH doing the same would be: a deactivation as ``disable``, member
        changes as ``add member``/``remove member``; and one that changes nothing (the
        stored resource sent back) writes nothing: no new version, no event.

        A PUT carrying ``password`` always changes the user, even when it is the password
        already set: a new salted hash is stored, with a new version and an ``update``
        event. Only the hash is kept, so telling the password unchanged would take one more
        scrypt (as long as hashing it, about 0.1 s of CPU) whenever it did change; and a
        version that stayed put for the right password would tell any read-write token
        whether a guess is the user's current one (Okta's password push sends the real
        one), leaving no event. RFC 7644 §3.5.1: a writeOnly value sent replaces the one
        held. A PUT without ``password`` keeps the stored hash and can change nothing.

        :param with_members: as for :meth:`create`.
        """
        resource = RESOURCE_TYPES[kind]
        document = load_resource(resource, payload)
        sent = document.pop("members", None)

        def replace_in(tx: Transaction) -> tuple[dict, list[str]]:
            current = _get(tx, kind, id)
            _check_version(tx, current, if_match, if_none_match)
            members = known_members(tx, sent)
            displays = current.get(MEMBER_DISPLAYS, {}) if sent is None else members.displays
            # A new dict (with_displays), so a run that is rolled back leaves the body as sent:
            # only its top-level password is set here, and tx.replace copies what it keeps.
            stored = with_displays(document, displays)
            if PASSWORD not in stored and PASSWORD in current:
                stored[PASSWORD] = current[PASSWORD]
            else:
                _hash_password(stored, previous=current.get(PASSWORD))
            operations = activity.describe_change(_editable(current), _editable(stored))
            if operations and _as_shown(current, resource) == _as_shown(stored, resource):
                operations = []  # only empty values differ, which no answer shows
            if not operations and displays != current.get(MEMBER_DISPLAYS, {}):
                operations = [activity.UPDATE]  # only the members' displays changed
            if operations:
                _write(tx.replace, kind, id, stored, if_version=current["meta"]["version"])
                if kind == constants.USER_TYPE:
                    _renew_groups_of(tx, current, stored)
            if kind == constants.GROUP_TYPE and sent is not None:
                operations += _replace_members(tx, id, members.ids)
            if not operations:
                return current, members.skipped
            stored = tx.get(kind, id)
            for operation in operations:
                activity.note(tx, context, operation, stored)
            return stored, members.skipped

        stored, skipped = run_transaction(self.repository, replace_in)
        return WriteOutcome(
            present(self.repository, stored, base_url, with_members=with_members), skipped
        )

    def patch(
        self,
        kind: str,
        id: str,
        body: object,
        base_url: str,
        *,
        if_match: str | None = None,
        if_none_match: str | None = None,
        context: dict | None = None,
        with_members: bool = True,
    ) -> PatchOutcome:
        """Apply a PatchOp (RFC 7644 §3.5.2) atomically: all operations or none.

        The operations run on a copy; a result that differs from the stored document is
        validated whole with the resource schema (which also coerces Entra's ``"False"`` and
        bare ``manager``), member ids are checked, and only then is anything written. Members
        never enter the copy: they come back as member changes (:mod:`scim.patch`). Member
        ids to add that name nothing are skipped, not refused (:mod:`scim.membership`).

        :param with_members: build a group's member list for the result; Entra's group PATCH
            is answered 204, so a member add then costs O(1), not O(members).
        """
        resource = RESOURCE_TYPES[kind]
        patch_operations = load_patch_request(body)

        def patch_in(tx: Transaction) -> tuple[dict, list[str], list[str], list[str]]:
            current = _get(tx, kind, id)
            _check_version(tx, current, if_match, if_none_match)
            editable = _editable(current)
            result = apply_patch(editable, patch_operations, resource)
            operations: list[str] = []
            skipped_members: list[str] = []
            # The stored document was loaded through the same schema when it was written: a
            # PATCH that left it as it was (Entra's member adds and removes) needs no second
            # validation, and writes nothing but the memberships.
            displays = current.get(MEMBER_DISPLAYS, {})
            if result.document != editable:
                try:
                    document = load_resource(resource, result.document, previous=editable)
                except errors.ScimError as error:
                    raise _InvalidResult(editable, error) from None
                _hash_password(document, previous=current.get(PASSWORD))
                operations = activity.describe_change(editable, document)
                if operations:
                    version = current["meta"]["version"]
                    document = with_displays(document, displays)
                    try:
                        _write(tx.replace, kind, id, document, if_version=version)
                    except errors.Uniqueness as error:
                        raise _InvalidResult(editable, error) from None
                    if kind == constants.USER_TYPE:
                        _renew_groups_of(tx, current, document)
            if result.member_changes:
                members = apply_member_changes(tx, id, result.member_changes, displays, base_url)
                operations += members.operations
                skipped_members = members.skipped
                if members.displays is not None:
                    # Only a PATCH sending or removing members with a display gets here:
                    # Entra's adds (ids only) to a group without any write nothing more.
                    kept = existing_displays(tx, members.displays)
                    tx.replace(kind, id, with_displays(tx.get(kind, id), kept))
                    if not operations:
                        operations = [activity.UPDATE]  # only displays changed
            stored = tx.get(kind, id)
            for operation in operations:
                activity.note(tx, context, operation, stored)
            return stored, result.skipped, skipped_members, operations

        try:
            stored, skipped, skipped_members, operations = run_transaction(
                self.repository, patch_in
            )
        except _InvalidResult as invalid:
            # Which operation to blame is found outside the transaction: it re-applies the
            # operations several times, and holds no lock while it does.
            started_from, error = invalid.document, invalid.error
            if isinstance(error, errors.Uniqueness) and error.attribute is not None:
                raise blame_change(
                    started_from, patch_operations, resource, error.attribute, error
                ) from None

            def validate(patched: dict) -> dict:
                return load_resource(resource, patched, previous=started_from)

            raise blame_operation(
                started_from, patch_operations, resource, validate, error
            ) from None
        return PatchOutcome(
            resource=present(self.repository, stored, base_url, with_members=with_members),
            skipped=skipped,
            skipped_members=skipped_members,
            changed=bool(operations),
            operations=operations,
        )

    def delete(
        self,
        kind: str,
        id: str,
        *,
        if_match: str | None = None,
        if_none_match: str | None = None,
        context: dict | None = None,
    ) -> dict:
        """Delete a resource; a user leaves every group it was in (RFC 7644 §3.6).

        Returns the deleted document.
        """

        def delete_in(tx: Transaction) -> dict:
            current = _get(tx, kind, id)
            _check_version(tx, current, if_match, if_none_match)
            tx.delete(kind, id)
            activity.note(tx, context, activity.DELETE, current)
            return current

        return run_transaction(self.repository, delete_in)

    # -- helpers -----------------------------------------------------------------------

    def _window(self, page: Page) -> tuple[int, int]:
        """The page's 1-based start and its size, capped at ``max_results``."""
        count = self.max_results if page.count is None else min(page.count, self.max_results)
        return page.start_index, count

    def _matching(
        self,
        kind: str,
        query: Query,
        base_url: str,
        candidates: list[dict] | None = None,
        predicate: Callable[[dict], bool] | None = None,
    ) -> list[dict]:
        """The documents of ``kind`` that match the query's filter, in insertion order.

        They may be the stored documents themselves (see :meth:`_candidates`): copy those
        kept. The filter is checked before anything is read, so a bad one is a 400 even when
        nothing is there to test.

        :param candidates: the documents an index pinned, if the caller looked them up;
        :param predicate: the filter's matcher, if the caller built it.
        """
        resource = RESOURCE_TYPES[kind]
        if predicate is None and query.filter is not None:
            predicate = matcher(query.filter, resource)
        if candidates is None:
            candidates = self._candidates(kind, query.filter, resource)
        derived = _derived(kind, query)
        if derived:
            candidates = derived_documents(self.repository, candidates, base_url, derived)
        if predicate is None:
            return candidates
        return [doc for doc in candidates if predicate(doc)]

    def _groups_of_users(self, page: list[dict], query: Query) -> dict[str, list[dict]]:
        """The groups of the users in a page, read at once (one statement on a database,
        where one per user made a page of 100 cost 101); none if the client sees neither
        ``groups`` nor ``meta`` (:func:`_reads_groups`)."""
        users = [doc["id"] for doc in page if doc["meta"]["resourceType"] == constants.USER_TYPE]
        if not users or not _reads_groups(constants.USER_TYPE, query):
            return {}
        return self.repository.group_documents_of(users)

    def _resource(
        self, kind: str, document: dict, base_url: str, query: Query, groups: dict[str, list[dict]]
    ) -> dict:
        """One document of a query's result as the resource the client asked to see.

        :param groups: the groups of the page's users (:meth:`_groups_of_users`).
        """
        with_members = wants_members(kind, query.attributes, query.excluded)
        return project(
            present(
                self.repository,
                document,
                base_url,
                with_members=with_members,
                groups=groups.get(document["id"], []),
            ),
            RESOURCE_TYPES[kind],
            query.attributes,
            query.excluded,
        )

    def _candidates(self, kind: str, expr: Filter | None, resource: ResourceTypeDef) -> list[dict]:
        """Documents that may match: copies of the few an index finds when the filter pins
        one, else every stored document itself, to be read in place (copying 50,000 users
        took half a second)."""
        pinned = self._pinned(kind, expr, resource) if expr is not None else None
        return list(self.repository.scan(kind)) if pinned is None else pinned.documents

    def _pinned(
        self, kind: str, expr: Filter, resource: ResourceTypeDef, *, with_groups: bool = False
    ) -> _Pinned | None:
        """Copies of the documents an index finds for an ``eq`` every match must satisfy
        (``id``, ``userName``, ``externalId``, ``displayName``); None if there is none.

        :param with_groups: also read the groups of the users found, in the same read (one
            statement on a database for Entra's matching lookup, not two).
        """
        for name, value in equality_terms(expr, resource):
            if name == "id":
                return _Pinned(existing_documents(self.repository, kind, [value]))
            if (kind, name) in _INDEXED:
                if with_groups:
                    return _Pinned(*self.repository.find_with_groups(kind, name, value))
                return _Pinned(self.repository.find_documents(kind, name, value))
        return None


@dataclass(frozen=True)
class _Pinned:
    """What an index found for a query: the documents, and their groups if read with them
    (user id -> group documents)."""

    documents: list[dict]
    groups: dict[str, list[dict]] | None = None


class _InvalidResult(Exception):
    """A PATCH whose result was refused, by the schema or for a unique value another resource
    holds (409): the document it started from and the error."""

    def __init__(self, document: dict, error: errors.ScimError) -> None:
        super().__init__(error.detail)
        self.document = document
        self.error = error


def _get(reader: Reader, kind: str, id: str) -> dict:
    """The stored document, or a SCIM 404 naming it."""
    try:
        return reader.get(kind, id)
    except storage_errors.NotFound:
        raise _not_found(kind, id) from None


def _not_found(kind: str, id: str) -> errors.NotFound:
    return errors.NotFound(f"{kind} {errors.quoted(id)} not found")


def _write(method, *args, **kwargs) -> dict:
    """Call a repository write, turning its errors into SCIM errors."""
    try:
        return method(*args, **kwargs)
    except storage_errors.Conflict as exc:
        noun = "user" if exc.kind == constants.USER_TYPE else "group"
        raise errors.Uniqueness(
            f"{exc.field} {errors.quoted(exc.value)} is already used by another {noun} "
            f"(id {exc.holder}); {exc.field} is unique, compared case-insensitively",
            attribute=exc.field,
        ) from None
    except storage_errors.VersionMismatch as exc:
        raise errors.PreconditionFailed(
            f"{exc.kind} {errors.quoted(exc.id)} changed meanwhile: it is at version {exc.current}"
        ) from None


def _check_version(
    reader: Reader, current: dict, if_match: str | None, if_none_match: str | None = None
) -> None:
    """RFC 7644 §3.14: a stale If-Match is a 412 and changes nothing; so is an If-None-Match
    that matches the current version or is ``*``, on a write (RFC 7232 §3.2)."""
    if if_match is None and if_none_match is None:
        return
    version = version_of(reader, current)
    _require_match(if_match, version)
    if if_none_match is not None and none_match_hit(if_none_match, version):
        raise errors.PreconditionFailed(
            f"If-None-Match {errors.shortened(if_none_match)} matches the current version "
            f"{version}, so the resource is left as it is (RFC 7232 §3.2)"
        )


def _renew_groups_of(tx: Transaction, before: dict, after: dict) -> None:
    """Write a new version of each group of a user whose member name changed.

    A group shows each member's current name (``members[].display``), so a rename changes
    what its groups look like; without a new version a client's cached copy would still be
    taken as current (If-None-Match → 304). Users are renamed rarely, and belong to few groups.
    A group showing the display a client sent for the user (Entra Q23) does not change, and
    keeps its version.
    """
    if member_display(before) == member_display(after):
        return
    user_id = before["id"]
    # Locked in id order, as a user's deletion locks them: two renames (or a rename and a
    # deletion) of users sharing groups then take turns instead of deadlocking on PostgreSQL.
    # And locked, not only listed: a group the user joins (on another process) while the
    # rename runs must be found too, or it would keep its version across the new name.
    for group_id in sorted(tx.lock_groups_of(user_id)):
        try:
            group = tx.get(constants.GROUP_TYPE, group_id)
        except storage_errors.NotFound:
            # Listed, then deleted by another process before its lock was granted (on
            # PostgreSQL): it shows no member now, so it needs no new version.
            continue
        if user_id not in group.get(MEMBER_DISPLAYS, {}):
            tx.replace(constants.GROUP_TYPE, group_id, group)


def _require_match(if_match: str | None, version: str) -> None:
    """RFC 7644 §3.14, RFC 7232 §3.1: a request whose If-Match names none of the current
    version (nor ``*``) is refused, on any method.

    :raises errors.PreconditionFailed:
    """
    if if_match is not None and not match_hit(if_match, version):
        raise errors.PreconditionFailed(
            f"If-Match {errors.shortened(if_match)} does not match the current version {version}; "
            "read the resource again and retry"
        )


def match_hit(if_match: str, version: str) -> bool:
    """Whether an If-Match header lets a request on ``version`` go ahead: ``*`` or a listed tag
    equal to it, ``W/`` included (RFC 7644 §3.14 sends the weak tag back as it came)."""
    candidates = [tag.strip() for tag in if_match.split(",")]
    return "*" in candidates or version in candidates


def none_match_hit(if_none_match: str, version: str) -> bool:
    """Whether an If-None-Match header matches the current version (a GET then answers 304).

    RFC 9110 §13.1.2: If-None-Match uses the weak comparison, so ``"1"``, ``W/"1"`` and the
    current ``W/"1"`` are the same tag, and ``*`` matches any version.
    """
    current = _opaque_tag(version)
    tags = [tag.strip() for tag in if_none_match.split(",")]
    return any(tag == "*" or _opaque_tag(tag) == current for tag in tags)


def _opaque_tag(tag: str) -> str:
    """An entity tag without its weakness indicator (RFC 9110 §8.8.3)."""
    return tag[2:] if tag.startswith("W/") else tag


def _replace_members(tx: Transaction, group_id: str, user_ids: list[str]) -> list[str]:
    """Make a group's members ``user_ids``; the activity operations that took (none when they
    were those already: members are unordered, RFC 7643 §2.4, so a PUT listing them in
    another order changes nothing)."""
    before = tx.members(group_id)
    kept = set(user_ids)
    added = bool(kept.difference(before))
    removed = any(uid not in kept for uid in before)
    if not added and not removed:
        return []
    tx.clear_members(group_id)
    tx.add_members(group_id, list(dict.fromkeys(user_ids)))
    return ([activity.ADD_MEMBER] if added else []) + ([activity.REMOVE_MEMBER] if removed else [])


def _editable(document: dict) -> dict:
    """The stored document without what the server owns (id, meta, relations, the members'
    displays)."""
    return {
        k: v
        for k, v in document.items()
        if k not in ("id", "meta", "groups", "members", MEMBER_DISPLAYS)
    }


def _as_shown(document: dict, resource: ResourceTypeDef) -> tuple[dict, object]:
    """What a GET shows of a stored document's editable part, and its password hash.

    A PUT compares these to tell whether it changes anything: an empty list or object (Entra
    creates users with ``"roles": []``) is never shown, so a client sending back the GET it
    read, without it, must not get a new version (RFC 7643 §2.5: empty is unassigned). The
    password is never shown, yet a PUT may set it.
    """
    editable = _editable(document)
    return project(editable, resource), editable.get(PASSWORD)


def _hash_password(document: dict, previous: str | None) -> None:
    """Keep only a salted hash of a password (RFC 7643 §4.1: never stored in clear)."""
    password = document.get(PASSWORD)
    if password is None or password == previous:
        return
    document[PASSWORD] = generate_password_hash(password)


def _reads_groups(kind: str, query: Query) -> bool:
    """Whether the resources of a query on ``kind`` need a user's groups: to show ``groups``,
    or ``meta.version``, which covers them (:func:`scim.presentation.version_of`), so that a
    listed user shows the version its GET does, whatever ``attributes`` leave out."""
    if kind != constants.USER_TYPE:
        return False
    return any(
        shows(USER_RESOURCE, name, query.attributes, query.excluded) for name in (GROUPS, "meta")
    )


def _derived(kind: str, query: Query) -> frozenset[str]:
    """What the query's filter and sortBy read that a stored document of ``kind`` lacks
    (:func:`scim.presentation.derived_reads`)."""
    paths = top_level_paths(query.filter) if query.filter is not None else []
    if query.sort_by is not None:
        paths.append(query.sort_by)
    return derived_reads(kind, paths)


def wants_members(
    kind: str, attributes: list[AttrPath] | None, excluded: list[AttrPath] | None
) -> bool:
    """Whether a group read must load members (skipped for excludedAttributes=members, Q9)."""
    return kind == constants.GROUP_TYPE and shows(GROUP_RESOURCE, MEMBERS, attributes, excluded)


def parse_query_filter(text: str | None, max_length: int) -> Filter | None:
    """Parse a ``filter`` parameter; absent or blank means no filter."""
    if text is None or not text.strip():
        return None
    return parse_filter(text, max_length=max_length)
