"""A group's members as their own relation: checking member ids and applying member changes.

Storage keeps membership apart from the group document, so renaming a user never rewrites a
group. The service takes member ids from a POST or PUT body, or :class:`MemberChange` records
from a PATCH, and applies them here inside the request's transaction: every id is checked
before anything is written, so a refused id leaves the group as it was.
"""

from __future__ import annotations

from collections.abc import Iterable

from scim import constants, errors
from scim.activity import ADD_MEMBER, REMOVE_MEMBER
from scim.definitions import GROUP_RESOURCE
from scim.filter import matches_element
from scim.patch import MemberChange
from scim.presentation import member_objects
from storage.repository import Reader, Transaction


def member_ids(members: list[dict] | None) -> list[str] | None:
    """The distinct ids of a validated ``members`` list, in order; None when it is absent."""
    if members is None:
        return None
    return list(dict.fromkeys(member["value"] for member in members))


def check_members(reader: Reader, user_ids: Iterable[str] | None) -> None:
    """Refuse unknown ids and groups as members, naming the id (nothing is applied).

    :raises errors.InvalidValue:
    """
    wanted = list(user_ids or ())
    users = set(reader.existing(constants.USER_TYPE, wanted)) if wanted else set()
    for user_id in wanted:
        if user_id in users:
            continue
        if reader.exists(constants.GROUP_TYPE, user_id):
            raise errors.InvalidValue(
                f"members: {user_id!r} is a group; nested groups are not supported, "
                "members must be users"
            )
        raise errors.InvalidValue(f"members: no user has id {user_id!r}")


def _add_members(tx: Transaction, group_id: str, user_ids: list[str]) -> list[str]:
    """Add the users; returns those added. An id neither added nor a member already is no
    user: refused, and the transaction is rolled back.

    Adding first and checking only what was not added saves a database round trip on
    Entra's usual add, which adds every id it sends.

    :raises errors.InvalidValue:
    """
    added = tx.add_members(group_id, user_ids)
    if len(added) < len(dict.fromkeys(user_ids)):
        new = set(added)
        check_members(tx, [user_id for user_id in user_ids if user_id not in new])
    return added


def apply_member_changes(tx: Transaction, group_id: str, changes: list[MemberChange]) -> list[str]:
    """Apply member adds and removals in order; returns the operations that changed something.

    The result holds :data:`ADD_MEMBER` and/or :data:`REMOVE_MEMBER`, for the activity log.

    :raises errors.InvalidValue: when an added id is not a user; nothing is applied then
        (the caller's transaction rolls back).
    """
    added: list[str] = []
    removed: list[str] = []
    for change in changes:
        if change.action == "add":
            added += _add_members(tx, group_id, list(change.ids))
        elif change.action == "remove":
            removed += tx.remove_members(group_id, list(change.ids))
        elif change.action == "clear":
            removed += tx.clear_members(group_id)
        elif change.action == "replace":
            wanted = list(dict.fromkeys(change.ids))
            removed += tx.remove_members(
                group_id, [uid for uid in tx.members(group_id) if uid not in wanted]
            )
            added += _add_members(tx, group_id, wanted)
        elif change.action == "remove_matching":
            assert change.filter is not None
            members_attribute = GROUP_RESOURCE.schema.attribute("members")
            assert members_attribute is not None
            doomed = [
                member["value"]
                for member in member_objects(tx, tx.members(group_id), "")
                if matches_element(change.filter, member, members_attribute)
            ]
            removed += tx.remove_members(group_id, doomed)
    return ([ADD_MEMBER] if added else []) + ([REMOVE_MEMBER] if removed else [])
