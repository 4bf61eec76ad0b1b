"""marshmallow fields for SCIM's attribute types (RFC 7643 §2.3), and how their errors read.

Each field accepts exactly its JSON type and nothing that merely converts to it: a number is not a
string, ``1`` is not a boolean. The tolerated variants Entra sends (``"True"``, a bare manager id,
...) are rewritten before the fields see them, by the steps in :mod:`scim.schemas.tolerance`.

Every message is written to follow the path of the value it is about, so the one boundary that
translates marshmallow's ``ValidationError`` (:func:`invalid_value`) can join them into details
such as ``emails[1].primary: expected a boolean, got 'yes'``.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

from marshmallow import ValidationError, fields, types

from scim.errors import InvalidValue, quoted
from storage.values import UNSTORABLE

# Messages marshmallow raises itself (RFC 7643 §2.2 "required").
_MESSAGES: types.ErrorMessages = {"required": "required", "null": "must not be null"}

# U+0000-U+001F and U+007F: never part of a name a person typed, and a newline in a userName
# breaks filters and log lines.
_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f]")
# Index keys stay well inside PostgreSQL's btree limit (about 2,700 bytes).
MAX_IDENTIFIER_BYTES = 2000

# RFC 7643 §2.3.5: xsd:dateTime, so a date alone, or a time without seconds, is not enough.
_DATETIME_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")

MAX_IDENTIFIER_LENGTH = 1024


def describe(value: object) -> str:
    """``value`` as a short phrase for an error message: ``'yes'``, ``5``, ``an object``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return quoted(value, 40)
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return repr(value)


def _expected(what: str, value: object) -> ValidationError:
    return ValidationError(f"expected {what}, got {describe(value)}")


class ScimString(fields.String):
    """A JSON string (RFC 7643 §2.3.1), kept exactly as sent: no trimming, no case change.

    Except U+0000 and unpaired surrogates (JSON can spell both, "\\u0000" and "\\ud800"):
    no text means them, and PostgreSQL cannot store them, so they are refused everywhere.
    """

    default_error_messages = _MESSAGES

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str):
            raise _expected("a string", value)
        unstorable = UNSTORABLE.search(value)
        if unstorable:
            code = f"U+{ord(unstorable.group()):04X}"
            what = "control characters" if code == "U+0000" else "unpaired surrogates"
            raise ValidationError(
                f"{what} are not allowed ({code} at position {unstorable.start()})"
            )
        return value


class ScimBoolean(fields.Boolean):
    """A JSON ``true`` or ``false`` (RFC 7643 §2.3.2); strings are coerced earlier (Entra Q2)."""

    default_error_messages = _MESSAGES

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if value is True or value is False:
            return value
        raise _expected("a boolean", value)


class ScimInteger(fields.Integer):
    """A JSON integer (RFC 7643 §2.3.4): not a float, not a string, not a boolean."""

    default_error_messages = _MESSAGES

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _expected("an integer", value)


class ScimDecimal(fields.Float):
    """A finite JSON number (RFC 7643 §2.3.3), stored as the number that was sent."""

    default_error_messages = _MESSAGES

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return value
        raise _expected("a number", value)


class ScimDateTime(fields.String):
    """An ISO 8601 date and time (RFC 7643 §2.3.5), validated but stored as sent (Entra Q19)."""

    default_error_messages = _MESSAGES

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        expected = "an ISO 8601 dateTime such as '2024-05-01T12:00:00Z'"
        if not isinstance(value, str) or not _DATETIME_SHAPE.match(value):
            raise _expected(expected, value)
        try:
            dt.datetime.fromisoformat(value)
        except ValueError as error:
            raise _expected(expected, value) from error
        return value


class ScimComplex(fields.Nested):
    """A complex attribute (RFC 7643 §2.3.8): a JSON object loaded by a nested schema."""

    default_error_messages = _MESSAGES

    def _deserialize(
        self,
        value: Any,
        attr: str | None,
        data: Mapping[str, Any] | None,
        partial: bool | types.StrSequenceOrSet | None = None,
        **kwargs: Any,
    ) -> Any:
        if not isinstance(value, Mapping):
            raise _expected("an object", value)
        return super()._deserialize(value, attr, data, partial=partial, **kwargs)


class ScimList(fields.List):
    """A multi-valued attribute (RFC 7643 §2.4): a JSON array of one field's values."""

    default_error_messages = _MESSAGES

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list:
        if not isinstance(value, list):
            raise _expected("a list", value)
        return super()._deserialize(value, attr, data, **kwargs)


def not_empty(value: str) -> None:
    """Reject ``""`` for a required string: an empty userName names nobody."""
    if value == "":
        raise ValidationError("must not be empty")


def identifier(value: str) -> None:
    """Reject control characters and more than 1024 characters in a name others match on."""
    control = _CONTROL_CHARACTER.search(value)
    if control:
        code = f"U+{ord(control.group()):04X}"
        raise ValidationError(
            f"control characters are not allowed ({code} at position {control.start()})"
        )
    if len(value) > MAX_IDENTIFIER_LENGTH:
        raise ValidationError(
            f"must be at most {MAX_IDENTIFIER_LENGTH} characters, got {len(value)}"
        )
    size = len(value.encode("utf-8"))
    if size > MAX_IDENTIFIER_BYTES:
        raise ValidationError(f"must be at most {MAX_IDENTIFIER_BYTES} bytes in UTF-8, got {size}")


def check_identifier(value: str, path: str) -> None:
    """:func:`identifier` for a value read outside a schema (a member's display in a PATCH).

    :raises InvalidValue: naming ``path``, e.g. ``members[0].display: control characters...``.
    """
    try:
        identifier(value)
    except ValidationError as error:
        raise invalid_value(ValidationError({path: error.messages})) from None


def invalid_value(error: ValidationError) -> InvalidValue:
    """The one translation of marshmallow's ``ValidationError`` into SCIM's ``invalidValue``.

    The detail lists every problem as ``path: message``, with the RFC 7644 §3.10 path notation:
    ``emails[1].primary``, ``urn:...:enterprise:2.0:User:manager.value``.
    """
    problems = [
        f"{path}: {message}" if path else message
        for path, message in _flatten(error.messages, "", ".")
    ]
    return InvalidValue("; ".join(problems) or "invalid value")


def _flatten(messages: object, path: str, separator: str) -> Iterator[tuple[str, str]]:
    """Walk marshmallow's nested messages, yielding ``(attribute path, message)`` pairs."""
    if isinstance(messages, Mapping):
        for key, nested in messages.items():
            if key == "_schema":
                yield from _flatten(nested, path, separator)
            elif isinstance(key, int):
                yield from _flatten(nested, f"{path}[{key}]", separator)
            else:
                # An extension URN is followed by ":" (RFC 7644 §3.10), everything else by ".".
                child_separator = ":" if key.startswith("urn:") else "."
                yield from _flatten(
                    nested, f"{path}{separator}{key}" if path else key, child_separator
                )
    elif isinstance(messages, list | tuple):
        for message in messages:
            yield from _flatten(message, path, separator)
    else:
        yield path, str(messages)
