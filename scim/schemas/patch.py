"""The PatchOp request body (RFC 7644 §3.5.2), loaded tolerantly into :class:`Operation` records.

Entra writes ops as "Replace" or "replace" (Q1), keys as "Operations" or "operations" and
"Value" (Q24), and the validator sends an empty ``Operations`` array (Q21); all of that loads.
marshmallow's ``ValidationError`` is translated here, once, into a SCIM error whose detail
names the place: ``Operations[2].op: 'move' is not one of add, replace, remove``.
"""

from __future__ import annotations

import functools
from typing import Any

from marshmallow import (
    EXCLUDE,
    Schema,
    ValidationError,
    fields,
    post_load,
    pre_load,
    validates_schema,
)

from scim.errors import InvalidSyntax, InvalidValue
from scim.patch import OPS, Operation
from scim.schemas.fields import ScimList, ScimString, describe

__all__ = ["Operation", "PatchOperationSchema", "PatchRequestSchema", "load_patch_request"]

_OPERATION_MEMBERS = ("op", "path", "value")


class _CaseInsensitiveKeys(Schema):
    """Accepts every key in any case: RFC 7643 §2.1 and Entra Q24 ("Operations", "Op")."""

    class Meta:
        unknown = EXCLUDE

    @pre_load
    def canonical_keys(self, data: object, **_: Any) -> object:
        """Rename keys to the declared casing; refuse a non-object as a POST's fields do."""
        if not isinstance(data, dict):
            raise ValidationError(f"expected an object, got {describe(data)}")
        names = self._names
        return {
            names.get(key.casefold(), key) if isinstance(key, str) else key: value
            for key, value in data.items()
        }

    @functools.cached_property
    def _names(self) -> dict[str, str]:
        """Folded key -> the declared key (fixed per schema instance, which is reused)."""
        return {
            (f.data_key or name).casefold(): f.data_key or name for name, f in self.fields.items()
        }


class _Op(ScimString):
    """``op`` compared case-insensitively and loaded lowercase (Entra Q1)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        folded = text.casefold()
        if folded not in OPS:
            raise ValidationError(f"{describe(text)} is not one of {', '.join(OPS)}")
        return folded


class PatchOperationSchema(_CaseInsensitiveKeys):
    """One operation: ``op``, an optional ``path`` and an optional ``value`` of any JSON type."""

    op = _Op(required=True)
    # The field types of a resource's attributes, so that a wrong type reads the same in a
    # PATCH as in a POST ("expected a string, got 5", "required"), not marshmallow's own words.
    path = ScimString(load_default=None, allow_none=True)
    # No default: an absent value and an explicit null differ. add and replace need a value
    # (RFC 7644 §3.5.2.1, §3.5.2.3); a null one clears (Entra Q13).
    value = fields.Raw(allow_none=True)

    @validates_schema
    def require_value(self, data: dict, **_: Any) -> None:
        """add and replace carry a ``value`` member."""
        if data.get("op") in ("add", "replace") and "value" not in data:
            raise ValidationError(f"required for {data['op']}", "value")

    @post_load
    def make_operation(self, data: dict, **_: Any) -> Operation:
        """An :class:`Operation`; an empty (or blank) path counts as no path.

        RFC 7644's grammar has no empty PATH, but it says an omitted path targets the
        resource itself (§3.5.2), and a client whose serializer writes an unset optional
        string sends ``"path": ""`` for exactly that (Go structs without ``omitempty``;
        elimity-com/scim cannot tell the two apart, scim2-models reads ``""`` as the
        resource, scim2-server 0.1 tests ``if not path``). So an add or replace with it
        writes the value's keys (Entra Q3's rules), and a remove is 400 ``noTarget``
        (§3.5.2.2), as without a path; Entra omits ``path`` and never sends it empty. A
        path that is not blank is parsed, surrounding spaces ignored.
        """
        path = data["path"]
        return Operation(data["op"], path if path and path.strip() else None, data.get("value"))


class PatchRequestSchema(_CaseInsensitiveKeys):
    """The PatchOp message: ``schemas`` (not checked against a closed list) and ``Operations``."""

    schemas = ScimList(ScimString(), load_default=list)
    # RFC 7644 asks for at least one operation; the Microsoft validator sends none (Entra Q21).
    operations = ScimList(fields.Nested(PatchOperationSchema), required=True, data_key="Operations")


# Reused: building a schema deep-copies its fields; loading keeps no state on it.
_PATCH_REQUEST = PatchRequestSchema()


def load_patch_request(body: object) -> list[Operation]:
    """The operations of a PATCH body.

    :raises InvalidSyntax: the body is not a PatchOp message (not an object, no Operations
        array, an operation that is not an object).
    :raises InvalidValue: an operation member has a wrong value (unknown op, non-string path).
    """
    if not isinstance(body, dict):
        raise InvalidSyntax("body: a PATCH body must be a JSON object with an Operations array")
    try:
        loaded = _PATCH_REQUEST.load(body)
    except ValidationError as error:
        problems = _flatten(error.messages)
        detail = "; ".join(f"{where}: {message}" for where, message, _ in problems)
        # A wrong member inside an operation is a bad value; anything else is a bad shape.
        if all(in_operation for _, _, in_operation in problems):
            raise InvalidValue(detail) from None
        raise InvalidSyntax(detail) from None
    return list(loaded["operations"])


def _flatten(messages: object, where: str = "") -> list[tuple[str, str, bool]]:
    """(location, message, inside-an-operation-member) for every leaf of marshmallow's messages."""
    if isinstance(messages, dict):
        found: list[tuple[str, str, bool]] = []
        for key, nested in messages.items():
            if isinstance(key, int):
                place = f"{where}[{key}]"
            elif key == "_schema":
                place = where or "body"
            else:
                place = f"{where}.{key}" if where else str(key)
            found += _flatten(nested, place)
        return found
    if isinstance(messages, list):
        return [leaf for message in messages for leaf in _flatten(message, where)]
    member = where.rsplit(".", 1)[-1]
    in_operation = where.startswith("Operations[") and member in _OPERATION_MEMBERS
    return [(where, str(messages), in_operation)]
