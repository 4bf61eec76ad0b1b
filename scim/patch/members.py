"""Translate a PATCH operation on a group's ``members`` into a :class:`MemberChange`.

Storage keeps members as their own relation, so a PATCH never edits ``document["members"]``:
each operation on ``members`` becomes a record the service applies to the relation. Entra
sends members as arrays of objects, one object, or bare ids, with keys in any case, and
removes them by value array, by ``members[value eq "id"]`` or all at once (A12, A13, Q5, Q23).
A ``display`` (or ``displayName``) sent with a member added is kept with the change, for the
group to show (Q23).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scim import constants
from scim.definitions import ResourceTypeDef
from scim.errors import InvalidPath, InvalidValue, Mutability
from scim.filter import Compare, Filter
from scim.patch.values import json_kind
from scim.paths import AttrPath, Resolved
from scim.schemas.fields import check_identifier
from scim.schemas.tolerance import sent_displays


@dataclass(frozen=True)
class MemberChange:
    """A change to a group's members, for the service to apply to the membership relation.

    ``action`` is "add", "remove", "replace" (with ``ids``), "clear", or "remove_matching"
    (with ``filter``, evaluated with :func:`scim.filter.element_matcher` over member dicts).
    """

    action: str
    ids: tuple[str, ...] = ()
    filter: Filter | None = None
    # For "add" and "replace": the display sent with a member, by id (Entra Q23); a member
    # sent without one (Entra's own adds) is not in it.
    displays: tuple[tuple[str, str], ...] = ()
    # Where the change was asked for, to begin an error's detail (``Operations[2]: members``);
    # not part of what the change is.
    place: str = field(default="members", compare=False)


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
        ids, _ = _members(value, label, displays=False)
        return MemberChange("remove", ids)  # A13 form 1, not all
    if value_filter is not None:
        raise InvalidPath(f"{label}: a members filter is only supported with remove")
    if op == "replace":
        ids, displays = _members(value, label)
        return MemberChange("replace", ids, displays=displays)
    if value not in (None, ""):
        ids, displays = _members(value, label)
        return MemberChange("add", ids, displays=displays)
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


def _members(
    value: object, label: str, *, displays: bool = True
) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """Member ids from an array of member objects, one object, or a bare id (Entra Q23), and
    the displays sent with them (:attr:`MemberChange.displays`; a removal ignores them)."""
    if value is None or value == "":
        return (), ()
    items = value if isinstance(value, list) else [value]
    ids: list[str] = []
    sent: dict[str, str] = {}
    for index, item in enumerate(items):
        member_id: object = item
        if isinstance(item, dict):
            # Keys in any case (Entra Q24); "$ref": null is ignored (Q17).
            member_id = next((v for k, v in item.items() if str(k).casefold() == "value"), None)
            if member_id is None:
                raise InvalidValue(f"{label}[{index}]: a member needs a 'value' (the user's id)")
        if not isinstance(member_id, str) or not member_id:
            raise InvalidValue(
                f"{label}[{index}]: a member id must be a non-empty string, "
                f"got {json_kind(member_id)}"
            )
        display = (
            _display(item, f"{label}[{index}]") if displays and isinstance(item, dict) else None
        )
        if member_id not in ids:
            ids.append(member_id)
            if display:
                sent[member_id] = display
    return tuple(ids), tuple(sent.items())


def _display(member: dict, label: str) -> str | None:
    """The ``display`` (or the reference suite's ``displayName``, any case) sent with a
    member, checked as a POST checks it; None when there is none (or it is null or "").

    :raises InvalidValue: for a display that is not a string, or not a name (control
        characters, too long), or one given twice.
    """
    sent = sent_displays(member)
    if len(sent) > 1:
        names = " and ".join(repr(key) for key in sent)
        raise InvalidValue(f"{label}: display given more than once, as {names}")
    display = next(iter(sent.values()), None)
    if display is None or display == "":
        return None
    if not isinstance(display, str):
        raise InvalidValue(f"{label}.display: expected a string, got {json_kind(display)}")
    check_identifier(display, f"{label}.display")
    return display
