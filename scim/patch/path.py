"""PATCH paths (RFC 7644 §3.5.2): ``attrPath``, or ``valuePath`` with an optional sub-attribute.

``emails[type eq "work"].value`` is an attribute path with a value filter inside brackets, so
this module builds on both :mod:`scim.paths` (attribute paths) and :mod:`scim.filter` (the
filter grammar); neither of them needs it.
"""

from __future__ import annotations

from dataclasses import dataclass

from scim.errors import InvalidPath, quoted
from scim.filter import Filter, parse_value_filter
from scim.paths import ATTRNAME, AttrPath, parse_attr_path


@dataclass(frozen=True)
class PatchPath:
    """A PATCH path: attrPath, or valuePath with optional ".subAttr" (RFC 7644 §3.5.2)."""

    attr: AttrPath
    value_filter: Filter | None = None
    sub_attribute: str | None = None

    def __str__(self) -> str:
        if self.value_filter is None:
            return str(self.attr)
        text = f"{self.attr}[{self.value_filter}]"
        return text if self.sub_attribute is None else f"{text}.{self.sub_attribute}"


def parse_patch_path(text: str) -> PatchPath:
    """Parse a PATCH path: ``attrPath`` or ``attrPath "[" valFilter "]" ["." subAttr]``.

    RFC 7644 §3.5.2. Errors inside the brackets are filter errors; the rest are path errors.

    :raises InvalidPath: the path around the brackets is malformed.
    :raises InvalidFilter: the filter inside the brackets is malformed.
    """
    open_at = _find_outside_strings(text, "[", 0)
    if open_at < 0:
        if "]" in text:
            raise InvalidPath(f"path: ']' without '[' at position {text.index(']') + 1}")
        return PatchPath(parse_attr_path(text))
    if not text[:open_at].strip(" \t"):
        raise InvalidPath(f"path: expected an attribute name before '[' in {quoted(text)}")
    attr = parse_attr_path(text[:open_at])
    if attr.sub_attribute is not None:
        raise InvalidPath(
            f"path: a value filter applies to a multi-valued attribute, not to the "
            f"sub-attribute {quoted(str(attr))}; write {attr.attribute}[...].{attr.sub_attribute}"
        )
    close_at = _find_outside_strings(text, "]", open_at + 1)
    if close_at < 0:
        raise InvalidPath(f"path: '[' at position {open_at + 1} has no closing ']'")
    value_filter = parse_value_filter(text, open_at + 1, close_at)
    rest = text[close_at + 1 :]
    if not rest:
        return PatchPath(attr, value_filter)
    if not rest.startswith("."):
        raise InvalidPath(
            f"path: expected '.' and a sub-attribute after ']' at position {close_at + 2}"
        )
    match = ATTRNAME.fullmatch(rest, 1)
    if match is None:
        raise InvalidPath(
            f"path: expected a sub-attribute name after '].' at position {close_at + 3}"
        )
    return PatchPath(attr, value_filter, match.group())


def _find_outside_strings(text: str, wanted: str, start: int) -> int:
    """The offset of ``wanted`` at or after ``start`` outside JSON strings, or -1."""
    in_string = escaped = False
    for offset in range(start, len(text)):
        char = text[offset]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == wanted:
            return offset
    return -1
