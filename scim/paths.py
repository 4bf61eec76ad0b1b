"""Attribute paths: parse them as written, resolve them against schema definitions, read values.

This is the one place that knows what ``name.givenName``, ``emails[type eq "work"].value`` and
``urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department`` mean. Filters, PATCH,
sorting and ``attributes``/``excludedAttributes`` all go through it, so attribute names are
compared case-insensitively here, once (RFC 7643 §2.1, Entra Q24).

Parsing is syntactic and keeps the text as written; :func:`resolve` maps a parsed path onto a
resource type's :class:`~scim.definitions.AttributeDef` tables and gives canonical names.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from scim.definitions import (
    ALWAYS,
    NEVER,
    READ_ONLY,
    REFERENCE,
    AttributeDef,
    ResourceTypeDef,
    SchemaDef,
    common_attribute,
)
from scim.errors import InvalidPath, quoted

# RFC 7644 §3.10: ATTRNAME = ALPHA *(nameChar), nameChar = "-" / "_" / DIGIT / ALPHA; RFC 7643
# §2.1 adds "$ref" for reference sub-attributes.
ATTRNAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*|\$ref")
_URN_PREFIX = "urn:"
# Characters that can never be part of a URN prefix in a path (RFC 3986 excludes them, and
# they delimit filters).
_NOT_IN_URN = frozenset(' \t\r\n"()[]')


class PathSyntaxError(ValueError):
    """A path is not well-formed; ``position`` is the 0-based offset of the problem.

    :func:`parse_attr_path` turns it into :class:`~scim.errors.InvalidPath`; the filter parser
    turns it into :class:`~scim.errors.InvalidFilter` with the position in the whole filter.
    """

    def __init__(self, reason: str, position: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.position = position


@dataclass(frozen=True)
class AttrPath:
    """An attribute path as written: [schema-urn ":"] attribute ["." sub_attribute]."""

    schema: str | None
    attribute: str
    sub_attribute: str | None = None

    def __str__(self) -> str:
        text = self.attribute if self.schema is None else f"{self.schema}:{self.attribute}"
        return text if self.sub_attribute is None else f"{text}.{self.sub_attribute}"


def scan_attr_path(text: str) -> AttrPath:
    """Parse ``text`` as an attrPath (RFC 7644 §3.10), strictly and without resolving it.

    A text starting with ``urn:`` (any case) carries a schema prefix: everything up to the last
    ``:``. Attribute and sub-attribute names cannot contain ``:``, so the last colon is the
    separator even though the URN itself holds dots and colons (``...:2.0:User``, Entra Q7).

    :raises PathSyntaxError: with the 0-based position of the problem.
    """
    schema: str | None = None
    start = 0
    if text[:4].casefold() == _URN_PREFIX:
        colon = text.rfind(":")
        if colon < len(_URN_PREFIX):
            raise PathSyntaxError("expected a schema URN, ':' and an attribute name", 0)
        for offset, char in enumerate(text[:colon]):
            if char in _NOT_IN_URN:
                raise PathSyntaxError(f"unexpected {char!r} in the schema URN", offset)
        schema, start = text[:colon], colon + 1
    attribute, end = _scan_name(text, start, "an attribute name")
    sub_attribute: str | None = None
    if end < len(text):
        if text[end] != ".":
            raise PathSyntaxError(f"unexpected {text[end]!r} after {quoted(attribute)}", end)
        sub_attribute, end = _scan_name(text, end + 1, "a sub-attribute name")
        if end < len(text):
            raise PathSyntaxError(f"unexpected {text[end]!r} after {quoted(sub_attribute)}", end)
    return AttrPath(schema, attribute, sub_attribute)


def _scan_name(text: str, start: int, what: str) -> tuple[str, int]:
    """The ATTRNAME at ``start`` and the offset after it."""
    match = ATTRNAME.match(text, start)
    if match is None:
        found = f", found {text[start]!r}" if start < len(text) else ""
        raise PathSyntaxError(f"expected {what}{found}", start)
    return match.group(), match.end()


def parse_attr_path(text: str, where: str = "path") -> AttrPath:
    """Parse an attribute path such as ``name.givenName`` or ``urn:...:User:manager.value``.

    Surrounding spaces are ignored so that ``attributes=userName, emails`` still works.

    :param where: what ``text`` is, to begin an error's detail: ``path`` in a PATCH, the
        query parameter (``sortBy``, ``excludedAttributes``) elsewhere.
    :raises InvalidPath: with what was wrong and the 1-based position in ``text``.
    """
    stripped = text.strip(" \t")
    lead = len(text) - len(text.lstrip(" \t"))
    if not stripped:
        raise InvalidPath(f"{where}: the attribute path is empty")
    try:
        return scan_attr_path(stripped)
    except PathSyntaxError as error:
        raise InvalidPath(
            f"{where}: {error.reason} at position {lead + error.position + 1} in {quoted(text)}"
        ) from None


@dataclass(frozen=True)
class Resolved:
    """An attribute path resolved against a resource type's schema definitions.

    ``in_extension`` is set by :func:`resolve` for attributes of an extension schema, which
    live under the schema URN key of a document rather than at its top level.
    """

    schema: SchemaDef
    attribute: AttributeDef
    sub_attribute: AttributeDef | None = None
    in_extension: bool = False

    @property
    def container(self) -> str | None:
        """The extension URN whose object holds the attribute, or None if top-level."""
        return self.schema.id if self.in_extension else None

    @property
    def name(self) -> str:
        """The canonical name: ``name.givenName``, ``urn:...:User:department``."""
        name = self.attribute.name
        if self.sub_attribute is not None:
            name = f"{name}.{self.sub_attribute.name}"
        return name if self.container is None else f"{self.container}:{name}"

    @property
    def definition(self) -> AttributeDef:
        """The definition of what the path names: the sub-attribute if any, else the attribute."""
        return self.sub_attribute or self.attribute

    @property
    def never_returned(self) -> bool:
        """Whether what the path names is ``returned: never`` (RFC 7643 §7), itself or through
        its attribute: no response may reveal it, so no filter or sort may read it."""
        return NEVER in (self.attribute.returned, self.definition.returned)


def resolve(path: AttrPath, resource: ResourceTypeDef) -> Resolved | None:
    """Resolve ``path`` against ``resource``; None if it names no attribute there.

    Names compare case-insensitively (RFC 7643 §2.1, Entra Q24). A URN prefix must name one of
    the resource's schemas and the attribute is looked up in that schema. Without a prefix only
    the core schema and the common attributes (id, externalId, meta) are searched: extension
    attributes need their URN (RFC 7644 §3.10).
    """
    if path.schema is None:
        return _resolve_in(resource.schema, path.attribute, path.sub_attribute, False)
    schema = resource.schema_by_id(path.schema)
    if schema is not None:
        return _resolve_in(
            schema, path.attribute, path.sub_attribute, schema is not resource.schema
        )
    # Pre-2019 Entra jobs wrote "urn:...:User.department": the schema URN, a dot, then the
    # attribute (entra-provisioning.md Q6). Syntactically that is schema "urn:...:2.0",
    # attribute "User", sub-attribute "department".
    schema = resource.schema_by_id(f"{path.schema}:{path.attribute}")
    if schema is None or path.sub_attribute is None:
        return None
    return _resolve_in(schema, path.sub_attribute, None, schema is not resource.schema)


def _resolve_in(
    schema: SchemaDef, attribute_name: str, sub_name: str | None, in_extension: bool
) -> Resolved | None:
    """Look ``attribute_name`` (and ``sub_name``) up in ``schema``, or in the common attributes."""
    attribute = schema.attribute(attribute_name)
    if attribute is None and not in_extension:
        attribute = _common_attribute(attribute_name)
    if attribute is None:
        return None
    sub_attribute = None
    if sub_name is not None:
        sub_attribute = attribute.sub_attribute(sub_name)
        if sub_attribute is None:
            return None
    return Resolved(schema, attribute, sub_attribute, in_extension)


# Every resource carries "schemas" (RFC 7643 §3), and RFC 7644 §3.4.2.2 Figure 2 filters on it
# (`schemas eq "urn:...:enterprise:2.0:User"`), but no schema definition lists it.
SCHEMAS_ATTRIBUTE = AttributeDef(
    "schemas",
    type=REFERENCE,
    multi_valued=True,
    required=True,
    mutability=READ_ONLY,
    returned=ALWAYS,
    description="The URIs of the schemas the resource conforms to.",
)


def _common_attribute(name: str) -> AttributeDef | None:
    """The common attribute (RFC 7643 §3.1), or ``schemas``, called ``name``, any case."""
    if name.casefold() == SCHEMAS_ATTRIBUTE.name.casefold():
        return SCHEMAS_ATTRIBUTE
    return common_attribute(name)


def split_urn(text: str, resource: ResourceTypeDef) -> tuple[str | None, str]:
    """Split a URN-prefixed key into (the schema's id, the rest) by the longest known schema.

    ``"urn:...:enterprise:2.0:User:department"`` gives ``(ENTERPRISE_USER, "department")``.
    The schema id is returned as defined; the rest as written. The text is never split on
    ``.`` (the URN holds ``2.0``) or on its first ``:`` (Entra Q7, A5.5 item 4). A key that is
    exactly a schema URN gives ``(urn, "")``; anything else gives ``(None, text)``.
    """
    for schema in sorted(resource.schemas, key=lambda s: len(s.id), reverse=True):
        size = len(schema.id)
        if text[:size].casefold() != schema.id.casefold():
            continue
        if len(text) == size:
            return schema.id, ""
        # ":" per RFC 7644 §3.10; "." is the pre-2019 Entra form (Q6).
        if text[size] in ":.":
            return schema.id, text[size + 1 :]
    return None, text


def values_reader(resolved: Resolved) -> Callable[[dict], list]:
    """A reader of every value at the path in a document, flattened; ``[]`` when absent.

    ``emails.value`` gives each email's value; a multi-valued complex attribute without a
    sub-attribute gives its element dicts; a single value gives a one-element list. Nulls are
    left out: they are the same as unassigned (RFC 7643 §2.5). Built once for the many
    documents a filter tests, so that the path's names are looked up once.
    """
    extension = resolved.container
    name = resolved.attribute.name
    multi_valued = resolved.attribute.multi_valued
    sub_name = None if resolved.sub_attribute is None else resolved.sub_attribute.name
    if extension is None and sub_name is None and not multi_valued:

        def read_one(document: dict) -> list:  # userName, title: most filters
            value = lookup(document, name)
            return [] if value is None else [value]

        return read_one

    def read(document: dict) -> list:
        container = document if extension is None else lookup(document, extension)
        if not isinstance(container, dict):
            return []
        value = lookup(container, name)
        if value is None:
            return []
        items = value if multi_valued and isinstance(value, list) else [value]
        if sub_name is None:
            return [item for item in items if item is not None]
        values: list = []
        for item in items:
            if not isinstance(item, dict):
                continue
            sub_value = lookup(item, sub_name)
            if isinstance(sub_value, list):
                values.extend(v for v in sub_value if v is not None)
            elif sub_value is not None:
                values.append(sub_value)
        return values

    return read


def lookup(mapping: dict, name: str) -> object:
    """``mapping[name]``, falling back to a case-insensitive key match; None if absent.

    Stored documents use canonical names, so the exact key almost always hits; the fallback
    keeps a document written with other casing readable (RFC 7643 §2.1).
    """
    if name in mapping:
        return mapping[name]
    folded = name.casefold()
    for key, value in mapping.items():
        if isinstance(key, str) and key.casefold() == folded:
            return value
    return None
