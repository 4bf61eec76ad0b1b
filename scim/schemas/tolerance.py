"""Every input variant we tolerate in a User or Group body, listed here and nowhere else.

Entra's client (and the validators Microsoft ships) send bodies that bend RFC 7643. Each step
below rewrites one such variant into the canonical form before the marshmallow fields see it;
the quirk ids refer to ``entra-provisioning.md``. The schemas in :mod:`scim.schemas.resources`
run the object steps from a ``pre_load`` hook on every object (top level, complex values,
extension objects) and the value steps as field ``pre_load`` functions.

On every object (:func:`canonical_keys`, :func:`without_absent`, :func:`without_read_only`):

- **Q24** attribute and sub-attribute names in any case become canonical (``"Primary"`` ->
  ``"primary"``), including keys inside the extension object and the extension URN key itself.
  One name given twice in different cases is an error, since we cannot tell which one is meant.
- **Q22** unknown attributes, top-level or inside a complex value, are skipped, never an error.
- **Q17, A3** ``schemas`` is skipped like an unknown key and recomputed from what was loaded, so
  the Microsoft group URI, an unknown URN or the legacy malformed
  ``"urn:...:enterprise:2.0User"`` is never rejected.
- **Q13** JSON ``null`` means absent (the legacy POST example sends ``"addresses": null``), and
  so does an object left empty (``"name": {}``, ``"manager": {"value": null}``).
- **A3** ``roles: []`` and any other empty list are accepted and kept as ``[]``, as sent (Q19).
  RFC 7643 §2.5 makes ``[]`` and absent the same state, but only ``[]`` lets a PUT say "no
  members" to a service that keeps the member list when ``members`` is left out.
- **A3, A8** read-only attributes in a POST or PUT (``id``, ``meta``, ``groups``,
  ``manager.displayName``) are dropped on purpose: marshmallow would treat these
  ``dump_only`` fields as unknown, and RFC 7643 §2.2 says the server ignores them.

On values (field ``pre_load`` functions, :data:`VALUE_STEPS`, :data:`OBJECT_STEPS`):

- **Q2** a boolean sent as the string ``"true"``/``"false"`` in any case becomes a real boolean
  (:func:`boolean_from_string`); anything else that is not a boolean stays an error, and what we
  store and emit is always a JSON boolean (**Q15**).
- A multi-valued attribute sent as a single value becomes a one-element list; ``null`` items
  are dropped (:func:`as_list`).
- **Q14** ``manager`` sent as a bare id becomes ``{"value": id}``
  (:func:`manager_from_bare_id`); the 2026 validator's ``{"value": {"value": id}}`` becomes
  ``{"value": id}`` (:func:`manager_value_unwrapped`).
- **Q17, Q23** a group member sent with ``"$ref": null`` or ``"Value"`` becomes
  ``{"value": id}`` by the object steps above; a bare id string becomes ``{"value": id}``
  (:func:`member_from_bare_id`); the reference suite's ``"displayName"`` (any case) is the
  member's ``display``, which the group keeps (:func:`member_display_name_as_display`);
  ``type`` is kept only when it is ``"User"``
  (any case), and a member of type ``"Group"`` is rejected, because Entra provisions no nested
  groups and Proware stores none (:func:`member_is_user`). A string ``$ref`` is kept, as the
  definitions declare it writable; a member without ``value`` is rejected (it names no one).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

from marshmallow import ValidationError

from scim import constants


def canonical_keys(data: Mapping[str, object], names: Collection[str]) -> dict[str, object]:
    """Rename keys to the canonical spelling in ``names`` (Entra Q24); drop unknown keys (Q22).

    :raises ValidationError: if one name is given twice, e.g. as ``userName`` and ``USERNAME``.
    """
    canonical = {name.casefold(): name for name in names}
    renamed: dict[str, object] = {}
    spelled_as: dict[str, str] = {}
    for key, value in data.items():
        name = canonical.get(key.casefold()) if isinstance(key, str) else None
        if name is None:
            continue
        if name in renamed:
            if value is None:
                continue  # null is absent (Q13): it cannot conflict with a value
            if renamed[name] is not None:
                raise ValidationError(
                    f"given more than once, as {spelled_as[name]!r} and {key!r}",
                    field_name=name,
                )
        renamed[name] = value
        spelled_as[name] = key
    return renamed


def without_absent(data: Mapping[str, object]) -> dict[str, object]:
    """Drop attributes whose value is ``null`` or ``{}`` (Entra Q13); ``[]`` is kept, as sent."""
    return {key: value for key, value in data.items() if not _is_absent(value)}


def without_read_only(data: Mapping[str, object], read_only: Collection[str]) -> dict[str, object]:
    """Drop read-only attributes a client may echo back in a POST or PUT (Entra A3, A8)."""
    return {key: value for key, value in data.items() if key not in read_only}


def boolean_from_string(value: object) -> object:
    """``"True"``/``"false"`` in any case -> ``True``/``False`` (Entra Q2); others unchanged."""
    if isinstance(value, str):
        folded = value.casefold()
        if folded == "true":
            return True
        if folded == "false":
            return False
    return value


def as_list(value: object) -> object:
    """A single value -> a one-element list; ``null`` items dropped from a list (Q13)."""
    if isinstance(value, list):
        return [item for item in value if item is not None]
    return [value]


def manager_from_bare_id(value: object) -> object:
    """``"manager": "<id>"`` -> ``{"value": "<id>"}`` (Entra Q14)."""
    return {"value": value} if isinstance(value, str) else value


def manager_value_unwrapped(manager: dict[str, object]) -> dict[str, object]:
    """``{"value": {"value": id}}`` -> ``{"value": id}`` (the 2026 validator, Entra Q14)."""
    inner = manager.get("value")
    if isinstance(inner, Mapping):
        unwrapped = canonical_keys(inner, ("value",)).get("value")
        if unwrapped is not None:
            return {**manager, "value": unwrapped}
    return manager


def member_from_bare_id(value: object) -> object:
    """``"members": ["<id>"]`` -> ``[{"value": "<id>"}]`` (Entra Q23); an object is given
    to :func:`member_display_name_as_display`."""
    if isinstance(value, str):
        return {"value": value}
    if isinstance(value, Mapping):
        return member_display_name_as_display(value)
    return value


def member_display_name_as_display(member: Mapping[str, object]) -> dict[str, object]:
    """A member's ``"displayName"`` (any case) -> ``"display"``: the reference suite's
    spelling of it (Entra Q23). Run before the object steps, which would drop it as unknown.

    :raises ValidationError: if the member also carries ``display``: which one is meant
        cannot be told.
    """
    spelled = sent_displays(member)
    if len(spelled) > 1:
        names = " and ".join(repr(key) for key in spelled)
        raise ValidationError(f"given more than once, as {names}", field_name="display")
    renamed: dict[str, object] = {}
    for key, value in member.items():
        if isinstance(key, str) and key.casefold() in MEMBER_DISPLAY_KEYS:
            if value is None:
                continue  # null is absent (Q13)
            key = "display"
        renamed[key] = value
    return renamed


def sent_displays(member: Mapping[str, object]) -> dict[str, object]:
    """The displays a member carries, by the key as sent (:data:`MEMBER_DISPLAY_KEYS`, any
    case; null ones are absent): more than one means the client gave it twice."""
    return {
        key: value
        for key, value in member.items()
        if isinstance(key, str) and key.casefold() in MEMBER_DISPLAY_KEYS and value is not None
    }


# A member's display as a client may spell it (any case): RFC 7643 §2.4's "display", and the
# reference suite's "displayName" (Entra Q23).
MEMBER_DISPLAY_KEYS = frozenset({"display", "displayname"})


def member_is_user(member: dict[str, object]) -> dict[str, object]:
    """Keep ``type`` only when it is ``"User"``; reject group members (no nested groups).

    :raises ValidationError: for a member of type ``"Group"`` or one without a ``value``.
    """
    member = dict(member)
    member_type = member.pop("type", None)
    if isinstance(member_type, str):
        if member_type.casefold() == constants.GROUP_TYPE.casefold():
            raise ValidationError("nested groups are not supported; members must be users")
        if member_type.casefold() == constants.USER_TYPE.casefold():
            member["type"] = constants.USER_TYPE
    elif member_type is not None:
        member["type"] = member_type  # not a string: let the field say so
    if "value" not in member:
        raise ValidationError("required", field_name="value")
    return member


# Steps for one attribute's values, keyed by (schema URN, canonical attribute name). For a
# multi-valued attribute they run on each item, after as_list.
VALUE_STEPS: dict[tuple[str, str], Callable[[object], object]] = {
    (constants.ENTERPRISE_USER, "manager"): manager_from_bare_id,
    (constants.GROUP, "members"): member_from_bare_id,
}

# Steps for one complex attribute's objects, run after the object steps above.
OBJECT_STEPS: dict[tuple[str, str], Callable[[dict[str, object]], dict[str, object]]] = {
    (constants.ENTERPRISE_USER, "manager"): manager_value_unwrapped,
    (constants.GROUP, "members"): member_is_user,
}


def _is_absent(value: object) -> bool:
    return value is None or value == {}
