"""Translate a PATCH operation on a group's ``members`` into a :class:`MemberChange`.

Storage keeps members as their own relation, so a PATCH never edits ``document["members"]``:
each operation on ``members`` becomes a record the service applies to the relation. Entra
sends members as arrays of objects, one object, or bare ids, with keys in any case, and
removes them by value array, by ``members[value eq "id"]`` or all at once (A12, A13, Q5, Q23).
"""

from __future__ import annotations

from dataclasses import dataclass

from scim import constants
from scim.definitions import ResourceTypeDef
from scim.errors import InvalidPath, InvalidValue, Mutability
from scim.filter import Compare, Filter
from scim.patch.values import json_kind
from scim.paths import AttrPath, Resolved


@dataclass(frozen=True)
class MemberChange:
    """A change to a group's members, for the service to apply to the membership relation.

    ``action`` is "add", "remove", "replace" (with ``ids``), "clear", or "remove_matching"
    (with ``filter``, evaluated with :func:`scim.filter.matches_element` over member dicts).
    """

    action: str
    ids: tuple[str, ...] = ()
    filter: Filter | None = None


def is_members(resource: ResourceTypeDef, resolved: Resolved) -> bool:
    """Whether a resolved PATCH target is a group's ``members``."""
    return resource.name == constants.GROUP_TYPE and resolved.attribute.name == "members"


def member_change(
    op: str, resolved: Resolved, value_filter: Filter | None, value: object, label: str
) -> MemberChange | None:
    """The change one operation on ``members`` asks for; None for an add of nothing.

    :raises ScimError: Mutability for a sub-attribute, InvalidPath for a filter outside
        remove, InvalidValue for a member without a usable id.
    """
    if resolved.sub_attribute is not None:
        raise Mutability(f"{label}: members are added or removed whole, not edited")
    if op == "remove":
        if value_filter is not None:
            member_id = _value_eq(value_filter)
            if member_id is not None:
                return MemberChange("remove", (member_id,))
            return MemberChange("remove_matching", filter=value_filter)
        if value is None:
            return MemberChange("clear")  # A13 form 3
        return MemberChange("remove", _member_ids(value, label))  # A13 form 1, not all
    if value_filter is not None:
        raise InvalidPath(f"{label}: a members filter is only supported with remove")
    if op == "replace":
        return MemberChange("replace", _member_ids(value, label))
    if value not in (None, ""):
        return MemberChange("add", _member_ids(value, label))
    return None


def _value_eq(value_filter: Filter) -> str | None:
    """The id in a filter that is exactly ``value eq "<id>"``, else None."""
    if isinstance(value_filter, Compare) and value_filter.op.casefold() == "eq":
        path: AttrPath = value_filter.path
        if (
            path.schema is None
            and path.sub_attribute is None
            and path.attribute.casefold() == "value"
            and isinstance(value_filter.value, str)
        ):
            return value_filter.value
    return None


def _member_ids(value: object, label: str) -> tuple[str, ...]:
    """Member ids from an array of member objects, one object, or a bare id (Entra Q23)."""
    if value is None or value == "":
        return ()
    items = value if isinstance(value, list) else [value]
    ids: list[str] = []
    for index, item in enumerate(items):
        member_id: object = item
        if isinstance(item, dict):
            # Keys in any case (Entra Q24); "$ref": null and "display" are ignored (Q17, Q23).
            member_id = next((v for k, v in item.items() if str(k).casefold() == "value"), None)
            if member_id is None:
                raise InvalidValue(f"{label}[{index}]: a member needs a 'value' (the user's id)")
        if not isinstance(member_id, str) or not member_id:
            raise InvalidValue(
                f"{label}[{index}]: a member id must be a non-empty string, "
                f"got {json_kind(member_id)}"
            )
        if member_id not in ids:
            ids.append(member_id)
    return tuple(ids)
