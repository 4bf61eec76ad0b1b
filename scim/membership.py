"""A group's members as their own relation: checking member ids and applying member changes.

Storage keeps membership apart from the group document, so renaming a user never rewrites a
group. The service takes member ids from a POST or PUT body, or :class:`MemberChange` records
from a PATCH, and applies them here inside the request's transaction.

A display a client sent with a member (Entra Q23) is kept in the group document
(:data:`scim.presentation.MEMBER_DISPLAYS`), for the members it names; a member added without
one shows the user's current name. Adding a user who is a member already changes nothing, its
display included; a replace states each member's display anew.

An id that names nothing at all (a user deleted on Proware's side, Q20, or restored away
with an older backup; the reference suite's ``"string id 1"``, Q23) is skipped and reported,
and the rest applied, by every method that writes members: a PATCH add or replace, a POST, a
PUT. An identity provider pushes the same member list again on every cycle, so refusing it
would stick the group for good (the principle of Q22); and a PUT states the members as
Okta's PATCH ``replace`` of ``members`` does (its group push sends both), so the two must not
answer differently. The answer's ``members`` shows who was kept. A group given as a member is
refused by every method: nested groups are not supported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scim import constants, errors
from scim.activity import ADD_MEMBER, REMOVE_MEMBER
from scim.definitions import GROUP_RESOURCE
from scim.filter import element_matcher
from scim.patch import MemberChange
from scim.presentation import MEMBER_DISPLAYS, member_objects
from storage.repository import Reader, Transaction


def member_ids(members: list[dict] | None) -> list[str] | None:
    """The distinct ids of a validated ``members`` list, in order; None when it is absent."""
    if members is None:
        return None
    return list(dict.fromkeys(member["value"] for member in members))


def member_displays(members: list[dict] | None) -> dict[str, str]:
    """The displays sent with the members of a validated ``members`` list, by id (the
    first, for an id given twice); members without one are left out."""
    displays: dict[str, str] = {}
    for member in members or ():
        if member.get("display") and member["value"] not in displays:
            displays[member["value"]] = member["display"]
    return displays


def with_displays(document: dict, displays: dict[str, str]) -> dict:
    """``document`` keeping ``displays`` as its :data:`MEMBER_DISPLAYS` (none if empty)."""
    document = {key: value for key, value in document.items() if key != MEMBER_DISPLAYS}
    if displays:
        document[MEMBER_DISPLAYS] = displays
    return document


def existing_displays(reader: Reader, displays: dict[str, str]) -> dict[str, str]:
    """``displays`` without the entries of users deleted since: their memberships went with
    them, so the entries would never be shown again (ids are not reused)."""
    users = set(reader.existing(constants.USER_TYPE, list(displays))) if displays else set()
    return {user_id: display for user_id, display in displays.items() if user_id in users}


@dataclass(frozen=True)
class SentMembers:
    """A POST's or PUT's ``members`` as the directory takes them: the users' ids (distinct,
    in order) and the displays sent with them, and the ids that name nothing, skipped."""

    ids: list[str]
    displays: dict[str, str]
    skipped: list[str]


def known_members(reader: Reader, members: list[dict] | None) -> SentMembers:
    """The validated ``members`` of a POST or PUT, without the ids that name nothing (the
    caller reports them). A group given as a member is refused, naming the member as sent
    (``members[3].value``).

    :raises errors.InvalidValue: for a group given as a member.
    """
    wanted = member_ids(members) or []
    users = set(reader.existing(constants.USER_TYPE, wanted)) if wanted else set()
    skipped: list[str] = []
    for index, member in enumerate(members or ()):
        user_id = member["value"]
        if user_id in users or user_id in skipped:
            continue
        if reader.exists(constants.GROUP_TYPE, user_id):
            raise _group_as_member(user_id, f"members[{index}].value")
        skipped.append(user_id)
    displays = member_displays(members)
    if skipped:
        gone = set(skipped)
        wanted = [uid for uid in wanted if uid not in gone]
        displays = {uid: display for uid, display in displays.items() if uid not in gone}
    return SentMembers(wanted, displays, skipped)


@dataclass
class MemberOutcome:
    """What a PATCH's member changes did: the activity operations (:data:`ADD_MEMBER` and/or
    :data:`REMOVE_MEMBER`), the ids skipped because they name nothing, in order, and the
    group's displays when they changed (None when they did not)."""

    operations: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    displays: dict[str, str] | None = None


def _add_members(
    tx: Transaction, group_id: str, user_ids: list[str], skipped: list[str], place: str
) -> list[str]:
    """Add the users; returns those added. An id neither added nor a member already names
    no user: a group is refused, anything else is appended to ``skipped``.

    Adding first and checking only what was not added saves a database round trip on
    Entra's usual add, which adds every id it sends.

    :raises errors.InvalidValue: for a group given as a member (the caller's transaction
        rolls back).
    """
    added = tx.add_members(group_id, user_ids)
    if len(added) < len(dict.fromkeys(user_ids)):
        new = set(added)
        rest = [user_id for user_id in dict.fromkeys(user_ids) if user_id not in new]
        users = set(tx.existing(constants.USER_TYPE, rest))
        for user_id in rest:
            if user_id in users:
                continue  # a member already
            if tx.exists(constants.GROUP_TYPE, user_id):
                raise _group_as_member(user_id, place)
            if user_id not in skipped:
                skipped.append(user_id)
    return added


def apply_member_changes(
    tx: Transaction,
    group_id: str,
    changes: list[MemberChange],
    displays: dict[str, str],
    base_url: str,
) -> MemberOutcome:
    """Apply member adds and removals in order.

    Ids to add that name nothing are skipped and listed in the outcome, for the caller to
    report; removing them is a no-op anyway.

    :param displays: the group's displays before the changes (:data:`MEMBER_DISPLAYS`).
    :param base_url: the SCIM base of the request: a removal by filter tests each member as
        a GET shows it, ``$ref`` included (RFC 7644 §3.5.2.2 filters on any sub-attribute).
    :raises errors.InvalidValue: when an added id is a group; nothing is applied then (the
        caller's transaction rolls back).
    """
    added: list[str] = []
    removed: list[str] = []
    skipped: list[str] = []
    after = dict(displays)
    for change in changes:
        if change.action == "add":
            added_now = _add_members(tx, group_id, list(change.ids), skipped, change.place)
            added += added_now
            if change.displays:  # never for Entra's adds, which send ids only
                sent = dict(change.displays)
                after.update((uid, sent[uid]) for uid in added_now if uid in sent)
        elif change.action == "remove":
            removed += _forget(after, tx.remove_members(group_id, list(change.ids)))
        elif change.action == "clear":
            removed += _forget(after, tx.clear_members(group_id))
        elif change.action == "replace":
            wanted = list(dict.fromkeys(change.ids))
            doomed = [uid for uid in tx.members(group_id) if uid not in wanted]
            removed += _forget(after, tx.remove_members(group_id, doomed))
            added += _add_members(tx, group_id, wanted, skipped, change.place)
            # A replace states every member whole: its display is the one sent, or none.
            _forget(after, wanted)
            after.update((uid, d) for uid, d in change.displays if uid not in skipped)
        elif change.action == "remove_matching":
            assert change.filter is not None
            members_attribute = GROUP_RESOURCE.schema.attribute("members")
            assert members_attribute is not None
            # Checked by the patcher already (scim.filter.validate_element), members or none.
            matches = element_matcher(change.filter, members_attribute)
            members = member_objects(tx, tx.members(group_id), base_url, after)
            doomed = [member["value"] for member in members if matches(member)]
            removed += _forget(after, tx.remove_members(group_id, doomed))
    operations = ([ADD_MEMBER] if added else []) + ([REMOVE_MEMBER] if removed else [])
    return MemberOutcome(operations, skipped, after if after != displays else None)


def _forget(displays: dict[str, str], user_ids: list[str]) -> list[str]:
    """Drop the displays of ``user_ids`` (members removed); returns ``user_ids``."""
    if displays:
        for user_id in user_ids:
            displays.pop(user_id, None)
    return user_ids


def _group_as_member(group_id: str, place: str) -> errors.InvalidValue:
    # The words of a member sent with "type": "Group" (scim.schemas.tolerance.member_is_user).
    return errors.InvalidValue(
        f"{place}: {errors.quoted(group_id)} is a group; nested groups are not supported; "
        "members must be users"
    )
