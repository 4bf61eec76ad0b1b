"""Which attributes a response carries: ``returned`` (RFC 7643 §7) plus the ``attributes`` and
``excludedAttributes`` parameters (RFC 7644 §3.4.2.5, §3.9).

``returned: never`` (password) is never in a response; ``always`` (id) always is, and so is
``schemas``, which every resource representation needs; ``default`` is returned unless excluded;
``request`` only when asked for. Entra reads groups with ``excludedAttributes=members`` (Q9).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scim import definitions
from scim.definitions import AttributeDef, ResourceTypeDef, SchemaDef
from scim.errors import InvalidValue, quoted
from scim.paths import AttrPath, parse_attr_path, resolve
from storage.values import clone

_CORE = ""  # the selection key of the core schema, whose attributes sit at the top level

# The most distinct names one attributes or excludedAttributes list may hold. Each is resolved
# again for every resource of the answer, so the list's length times the page's size was the
# cost: 50,000 names on a page of 1,000 users held the server for 37 s. A User has 76
# attributes and sub-attributes, each nameable with or without its URN.
MAX_ATTRIBUTE_NAMES = 200


def parse_attribute_list(text: str | None, parameter: str = "attributes") -> list[AttrPath]:
    """Parse a comma-separated attribute list such as ``userName,name.givenName``.

    Empty items ("userName,") are ignored. ``parameter`` names the query parameter in errors.

    :raises InvalidValue: an item is a filtered path, which these parameters do not take, or
        the list names more than MAX_ATTRIBUTE_NAMES (a name repeated counts once).
    :raises InvalidPath: an item is not an attribute path.
    """
    if not text:
        return []
    items = dict.fromkeys(item for item in text.split(",") if item.strip())
    if len(items) > MAX_ATTRIBUTE_NAMES:
        raise InvalidValue(
            f"{parameter}: {len(items)} names; at most {MAX_ATTRIBUTE_NAMES} different "
            "ones are accepted"
        )
    paths: list[AttrPath] = []
    for item in items:
        if "[" in item or "]" in item:
            raise InvalidValue(
                f"{parameter}: {quoted(item.strip())} holds a filter; list attribute names only"
            )
        paths.append(parse_attr_path(item, parameter))
    return paths


@dataclass
class _Selection:
    """Resolved attribute paths, keyed by (container, canonical attribute name)."""

    containers: set[str] = field(default_factory=set)
    whole: set[tuple[str, str]] = field(default_factory=set)
    subs: dict[tuple[str, str], set[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, paths: list[AttrPath], resource: ResourceTypeDef) -> _Selection:
        """The selection ``paths`` make; names the resource does not have are ignored."""
        selection = cls()
        for path in paths:
            resolved = resolve(path, resource)
            if resolved is None:
                # "urn:...:enterprise:2.0:User" parses as schema "urn:...:2.0", attribute "User".
                urn = f"{path.schema}:{path.attribute}" if path.schema else None
                schema = resource.schema_by_id(urn) if urn and path.sub_attribute is None else None
                if schema is not None:
                    selection.containers.add(_key(schema, resource))
                continue
            key = (resolved.container or _CORE, resolved.attribute.name)
            if resolved.sub_attribute is None:
                selection.whole.add(key)
            else:
                selection.subs.setdefault(key, set()).add(resolved.sub_attribute.name)
        return selection

    def names(self, container: str, attribute: str) -> bool | set[str]:
        """True if the whole attribute is selected, else the selected sub-attribute names."""
        key = (container, attribute)
        if container in self.containers or key in self.whole:
            return True
        return self.subs.get(key, set())


def shows(
    resource: ResourceTypeDef,
    attribute: str,
    attributes: list[AttrPath] | None,
    excluded: list[AttrPath] | None,
) -> bool:
    """Whether :func:`project` with ``attributes``/``excluded`` may keep the core attribute
    ``attribute`` (canonical name, returned by default), or part of it: whether a read must
    load it (a group's members, a user's groups).

    Paths count as :func:`project` counts them: in any case, URN-prefixed, or the core
    schema's URN for every core attribute (``attributes=urn:...:core:2.0:Group``).
    """
    if attributes:
        return bool(_Selection.of(attributes, resource).names(_CORE, attribute))
    if excluded:
        return _Selection.of(excluded, resource).names(_CORE, attribute) is not True
    return True


def project(
    document: dict,
    resource: ResourceTypeDef,
    attributes: list[AttrPath] | None = None,
    excluded: list[AttrPath] | None = None,
) -> dict:
    """``document`` with only the attributes a response may carry.

    With ``attributes``, only those (and the ``always`` ones) are returned; a sub-attribute
    returns its parent with only that sub-attribute. ``excluded`` removes (sub-)attributes.
    The input is never mutated; it is returned itself when nothing is to be left out (no
    ``attributes`` or ``excluded``, and nothing returned "never" or only on request), which
    is what nearly every response is, so the caller must not change the result either.
    """
    if not attributes and not excluded and not _withheld_by_default(document, resource):
        return document
    wanted = _Selection.of(attributes, resource) if attributes else None
    unwanted = _Selection.of(excluded or [], resource)
    result: dict = {}
    for key, value in document.items():
        if key == "schemas":
            result[key] = clone(value)
            continue
        extension = resource.schema_by_id(key)
        if extension is not None and extension is not resource.schema:
            if isinstance(value, dict):
                inner = _project_object(value, extension, extension.id, wanted, unwanted)
                if inner:
                    result[key] = inner
            continue
        projected = _project_object({key: value}, resource.schema, _CORE, wanted, unwanted)
        result.update(projected)
    return result


def _project_object(
    values: dict,
    schema: SchemaDef,
    container: str,
    wanted: _Selection | None,
    unwanted: _Selection,
) -> dict:
    """Project the attributes in ``values``, which belong to ``schema``."""
    result: dict = {}
    for name, value in values.items():
        definition = schema.attribute(name)
        if definition is None and container == _CORE:
            definition = definitions.common_attribute(name)
        if definition is None:
            if wanted is None:
                result[name] = clone(value)  # not ours to judge; keep it by default
            continue
        if definition.returned == definitions.NEVER:
            continue
        if definition.returned == definitions.ALWAYS:
            result[name] = clone(value)
            continue
        chosen = wanted.names(container, definition.name) if wanted else True
        dropped = unwanted.names(container, definition.name)
        if dropped is True or not chosen:
            continue
        if definition.returned == definitions.REQUEST and wanted is None:
            continue  # RFC 7643 §7: "request" attributes only when named in attributes
        kept = _project_value(
            definition, value, None if chosen is True else chosen, dropped or set()
        )
        if kept not in ({}, []):
            result[name] = kept
    return result


def _project_value(
    definition: AttributeDef, value: object, chosen: set[str] | None, dropped: set[str]
) -> object:
    """A complex value with only its returnable, selected sub-attributes."""
    if not definition.sub_attributes:
        return clone(value)
    if isinstance(value, dict):
        return _project_subs(definition, value, chosen, dropped)
    if isinstance(value, list):
        items = [
            _project_subs(definition, item, chosen, dropped)
            if isinstance(item, dict)
            else clone(item)
            for item in value
        ]
        return [item for item in items if item != {}]
    return clone(value)


def _project_subs(
    definition: AttributeDef, value: dict, chosen: set[str] | None, dropped: set[str]
) -> dict:
    result: dict = {}
    for name, sub_value in value.items():
        sub = definition.sub_attribute(name)
        if sub is None:
            keep = chosen is None
        elif sub.returned == definitions.NEVER:
            keep = False
        elif sub.returned == definitions.ALWAYS:
            keep = True
        elif sub.name in dropped:
            keep = False
        elif chosen is not None:
            keep = sub.name in chosen
        else:
            keep = sub.returned == definitions.DEFAULT
        if keep:
            result[name] = clone(sub_value)
    return result


def _withheld_by_default(document: dict, resource: ResourceTypeDef) -> bool:
    """Whether a default projection (no attributes, no excluded) changes ``document``.

    It does when the document holds an attribute returned "never" or "request" (or one with
    such a sub-attribute; those names are few and known per resource type), or an empty
    complex or multi-valued value, which projection leaves out.
    """
    names = _DEFAULT_WITHHELD.get(resource.name)
    if names is None:
        names = _DEFAULT_WITHHELD[resource.name] = _withheld_names(resource)
    for key, value in document.items():
        if key.casefold() in names or _empty(value):
            return True
        if isinstance(value, dict) and key != "meta":  # an extension's attributes
            for inner, inner_value in value.items():
                if inner.casefold() in names or _empty(inner_value):
                    return True
    return False


def _empty(value: object) -> bool:
    """An empty object or list, or a list holding an empty object: left out of a response."""
    if isinstance(value, list):
        return not value or {} in value
    return value == {}


# resource type name -> casefolded names a default projection may change (see below)
_DEFAULT_WITHHELD: dict[str, frozenset[str]] = {}


def _withheld_names(resource: ResourceTypeDef) -> frozenset[str]:
    """Attribute names (any schema of ``resource``) that are returned "never" or "request",
    or have a sub-attribute that is; matched case-insensitively, as projection matches."""
    withheld = (definitions.NEVER, definitions.REQUEST)
    names = set()
    for schema in resource.schemas:
        for attribute in schema.attributes:
            subs = attribute.sub_attributes or ()
            if attribute.returned in withheld or any(sub.returned in withheld for sub in subs):
                names.add(attribute.name.casefold())
    return frozenset(names)


def _key(schema: SchemaDef, resource: ResourceTypeDef) -> str:
    return _CORE if schema is resource.schema else schema.id
