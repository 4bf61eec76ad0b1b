"""Apply a SCIM PATCH (RFC 7644 §3.5.2) to a resource document, Entra's dialects included.

:func:`apply_patch` is a pure function: it patches a deep copy and returns it, so an error in
any operation leaves the caller's document untouched (RFC 7644 §3.5.2: PATCH is atomic). It
does not coerce scalar types ("False" stays a string): the service re-validates the whole
patched document with the resource schema afterwards. Group membership is not written into
the document; it comes back as :class:`MemberChange` records, because storage keeps members
as their own relation.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace

from scim import constants, definitions
from scim.definitions import AttributeDef, ResourceTypeDef
from scim.errors import InvalidPath, InvalidValue, Mutability, NoTarget, ScimError
from scim.filter import And, Compare, Filter, matches_element
from scim.paths import AttrPath, Resolved, parse_attr_path, parse_patch_path, resolve, split_urn

OPS = ("add", "replace", "remove")


@dataclass(frozen=True)
class Operation:
    """One PATCH operation: ``op`` is lowercase add/replace/remove (Entra Q1)."""

    op: str
    path: str | None = None
    value: object = None


@dataclass(frozen=True)
class MemberChange:
    """A change to a group's members, for the service to apply to the membership relation.

    ``action`` is "add", "remove", "replace" (with ``ids``), "clear", or "remove_matching"
    (with ``filter``, evaluated with :func:`scim.filter.matches_element` over member dicts).
    """

    action: str
    ids: tuple[str, ...] = ()
    filter: Filter | None = None


@dataclass
class PatchResult:
    """The patched copy, the member changes to apply, and the names skipped as unknown."""

    document: dict
    member_changes: list[MemberChange] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def apply_patch(
    document: dict, operations: list[Operation], resource: ResourceTypeDef
) -> PatchResult:
    """Apply ``operations`` in order to a copy of ``document``.

    :raises ScimError: InvalidPath, InvalidValue, Mutability or NoTarget, with a detail that
        names the operation; nothing is returned then, so nothing half-applied can be stored.
    """
    patcher = _Patcher(copy.deepcopy(document), resource)
    for index, operation in enumerate(operations):
        try:
            patcher.apply(operation)
        except ScimError as error:
            raise type(error)(f"Operations[{index}]: {error.detail}") from error
    return PatchResult(patcher.document, patcher.member_changes, patcher.skipped)


class _Patcher:
    """The state of one PATCH: the working copy and what was collected on the way."""

    def __init__(self, document: dict, resource: ResourceTypeDef) -> None:
        self.document = document
        self.resource = resource
        self.member_changes: list[MemberChange] = []
        self.skipped: list[str] = []

    def apply(self, operation: Operation) -> None:
        """Apply one operation (``op`` compared case-insensitively, Entra Q1)."""
        op = operation.op.casefold() if isinstance(operation.op, str) else operation.op
        if op not in OPS:
            raise InvalidValue(f"op: {operation.op!r} is not one of add, replace, remove")
        # The value is copied so the result never aliases the caller's request body.
        value = copy.deepcopy(operation.value)
        path = operation.path
        if path is None:
            if op == "remove":
                raise NoTarget("remove needs a path (RFC 7644 §3.5.2.2)")
            if not isinstance(value, dict):
                raise InvalidValue(f"value: a path-less {op} needs an object, got {_kind(value)}")
            self._apply_object(op, None, value)
        elif not isinstance(path, str):
            raise InvalidPath(f"path: expected a string, got {_kind(path)}")
        else:
            self._apply_path(op, path, value)

    # -- addressing -------------------------------------------------------------------------

    def _apply_object(self, op: str, schema_urn: str | None, value: dict) -> None:
        """Treat each key of a path-less value as a path (RFC 7644 §3.5.2.1, Entra Q3, A5.5)."""
        for key, item in value.items():
            label = f"{schema_urn}:{key}" if schema_urn else str(key)
            if not isinstance(key, str):
                raise InvalidPath(f"value: {key!r} is not an attribute name")
            urn, rest = (schema_urn, key) if schema_urn else split_urn(key, self.resource)
            if schema_urn is None and urn is not None and not rest:
                # {"urn:...:enterprise:2.0:User": {"department": ...}} merges (A5.5 form 3).
                if item is None:
                    continue
                if not isinstance(item, dict):
                    raise InvalidValue(f"{label}: expected an object, got {_kind(item)}")
                self._apply_object(op, urn, item)
                continue
            if urn is None and key.casefold().startswith("urn:"):
                self.skipped.append(label)  # an extension this resource does not have (Q22)
                continue
            path = parse_attr_path(rest)
            resolved = resolve(replace(path, schema=urn) if urn else path, self.resource)
            if resolved is None or _read_only(resolved):
                # Path-less values often echo a whole resource: skip what we cannot write.
                self.skipped.append(label)
                continue
            self._dispatch(op, resolved, None, item, label)

    def _apply_path(self, op: str, text: str, value: object) -> None:
        """Apply an operation with an explicit path."""
        urn, rest = split_urn(text, self.resource)
        if urn is not None and not rest:
            if op == "remove":
                if urn == self.resource.schema.id:
                    raise InvalidPath(f"{text}: the core schema cannot be removed")
                self.document.pop(urn, None)
                self._drop_schema(urn)
            elif isinstance(value, dict):
                self._apply_object(op, urn, value)
            elif value is not None:
                raise InvalidValue(f"{text}: expected an object, got {_kind(value)}")
            return
        if urn is None and text.casefold().startswith("urn:"):
            self.skipped.append(text)  # Entra Q22: an unknown extension never fails the batch
            return
        patch_path = parse_patch_path(rest if urn else text)
        attr_path = patch_path.attr
        if urn:
            attr_path = replace(attr_path, schema=urn)
        if patch_path.sub_attribute is not None:
            attr_path = replace(attr_path, sub_attribute=patch_path.sub_attribute)
        resolved = resolve(attr_path, self.resource)
        if resolved is None:
            self.skipped.append(text)  # Entra Q22
            return
        if _read_only(resolved):
            raise Mutability(f"{text}: {resolved.name} is read-only")
        value_filter = patch_path.value_filter
        if value_filter is not None and not (
            resolved.attribute.multi_valued and resolved.attribute.type == definitions.COMPLEX
        ):
            raise InvalidPath(f"{text}: a filter needs a multi-valued complex attribute")
        self._dispatch(op, resolved, value_filter, value, text)

    def _dispatch(
        self, op: str, resolved: Resolved, value_filter: Filter | None, value: object, label: str
    ) -> None:
        """Route one resolved target to the member, remove or write logic."""
        if self._is_members(resolved):
            self._members(op, resolved, value_filter, value, label)
        elif op == "remove" or value is None or value == "":
            # Entra Q13: null or "" clears; a value on a remove of a single value is ignored.
            self._remove(resolved, value_filter, value if op == "remove" else None, label)
        else:
            self._write(op, resolved, value_filter, value, label)
        self._tidy(resolved)

    # -- writing ----------------------------------------------------------------------------

    def _write(
        self, op: str, resolved: Resolved, value_filter: Filter | None, value: object, label: str
    ) -> None:
        """Add or replace a non-empty value at the target."""
        attribute, sub = resolved.attribute, resolved.sub_attribute
        container = self._container(resolved.container, create=True)
        assert container is not None
        if value_filter is not None:
            elements = _list(container, attribute.name)
            matched = [e for e in elements if _element_matches(value_filter, e, attribute)]
            if not matched:
                # Entra Q4: a filtered write with no match creates the element, so several
                # ops with the same filter land in one element.
                matched = [_seed(value_filter, attribute, label)]
                elements.append(matched[0])
            new = (
                {sub.name: _scalar(value, label)} if sub else self._complex(attribute, value, label)
            )
            for element in matched:
                _merge(element, new)
            _one_primary(elements, matched)
        elif sub is not None and attribute.multi_valued:
            # "emails.value" without a filter addresses every element.
            elements = _list(container, attribute.name)
            if not elements:
                elements.append({})
            for element in elements:
                if isinstance(element, dict):
                    element[sub.name] = _scalar(value, label)
        elif sub is not None:
            _dict(container, attribute.name)[sub.name] = _scalar(value, label)
        elif attribute.multi_valued:
            items = value if isinstance(value, list) else [value]
            new_elements = [
                self._element(attribute, item, f"{label}[{i}]") for i, item in enumerate(items)
            ]
            # RFC 7644 §3.5.2.1: add appends, skipping values already there; replace swaps
            # the whole list (§3.5.2.3).
            elements = [] if op == "replace" else _list(container, attribute.name)
            added = []
            for element in new_elements:
                if element not in (None, {}) and element not in elements:
                    elements.append(element)
                    added.append(element)
            container[attribute.name] = elements
            _one_primary(elements, added)
        elif attribute.type == definitions.COMPLEX:
            # RFC 7644 §3.5.2.1/3: an object merges into a complex attribute.
            _merge(_dict(container, attribute.name), self._complex(attribute, value, label))
        else:
            container[attribute.name] = _scalar(value, label)

    def _element(self, attribute: AttributeDef, item: object, label: str) -> object:
        """One new element of a multi-valued attribute, with canonical sub-attribute names."""
        if attribute.type != definitions.COMPLEX:
            return _scalar(item, label)
        element = self._complex(attribute, item, label)
        return {key: sub_value for key, sub_value in element.items() if sub_value is not None}

    def _complex(self, attribute: AttributeDef, value: object, label: str) -> dict:
        """A client's object for a complex attribute, keyed by canonical names (Entra Q24)."""
        if isinstance(value, list) and len(value) == 1 and not attribute.multi_valued:
            value = value[0]  # the legacy manager add sends a one-element array (A17)
        if not isinstance(value, dict):
            if attribute.sub_attribute("value") is None or isinstance(value, list | dict):
                raise InvalidValue(f"{label}: expected an object, got {_kind(value)}")
            value = {"value": value}  # Entra Q14: a bare id for manager means {"value": id}
        result: dict = {}
        for key, item in value.items():
            sub = attribute.sub_attribute(key) if isinstance(key, str) else None
            if sub is None or sub.mutability == definitions.READ_ONLY:
                self.skipped.append(f"{label}.{key}")
                continue
            result[sub.name] = _scalar(item, f"{label}.{key}")
        return result

    # -- removing ---------------------------------------------------------------------------

    def _remove(
        self, resolved: Resolved, value_filter: Filter | None, value: object, label: str
    ) -> None:
        """Clear the target; removing something absent is a no-op (RFC 7644 §3.5.2.2)."""
        attribute, sub = resolved.attribute, resolved.sub_attribute
        container = self._container(resolved.container, create=False)
        if container is None or attribute.name not in container:
            return
        current = container[attribute.name]
        if value_filter is not None or (sub is not None and attribute.multi_valued):
            elements = current if isinstance(current, list) else []
            targets = [
                e
                for e in elements
                if value_filter is None or _element_matches(value_filter, e, attribute)
            ]
            if sub is not None:
                for element in targets:
                    if isinstance(element, dict):
                        element.pop(sub.name, None)
                container[attribute.name] = [e for e in elements if e != {}]
            else:
                container[attribute.name] = [e for e in elements if not _in(e, targets)]
        elif sub is not None:
            if isinstance(current, dict):
                current.pop(sub.name, None)
        elif attribute.multi_valued and isinstance(current, list) and value not in (None, ""):
            # Not RFC, but the shape Entra uses for members (Q5): remove just the given values.
            items = value if isinstance(value, list) else [value]
            given = [
                self._element(attribute, item, f"{label}[{i}]") for i, item in enumerate(items)
            ]
            container[attribute.name] = [e for e in current if not _covered(e, given)]
        else:
            del container[attribute.name]

    # -- group members ----------------------------------------------------------------------

    def _is_members(self, resolved: Resolved) -> bool:
        return self.resource.name == constants.GROUP_TYPE and resolved.attribute.name == "members"

    def _members(
        self, op: str, resolved: Resolved, value_filter: Filter | None, value: object, label: str
    ) -> None:
        """Record a member change instead of editing document["members"] (A12, A13, Q5)."""
        if resolved.sub_attribute is not None:
            raise Mutability(f"{label}: members are added or removed whole, not edited")
        if op == "remove":
            if value_filter is not None:
                member_id = _value_eq(value_filter)
                if member_id is not None:
                    self.member_changes.append(MemberChange("remove", (member_id,)))
                else:
                    self.member_changes.append(MemberChange("remove_matching", filter=value_filter))
            elif value is None:
                self.member_changes.append(MemberChange("clear"))  # A13 form 3
            else:
                ids = _member_ids(value, label)
                self.member_changes.append(MemberChange("remove", ids))  # A13 form 1, not all
            return
        if value_filter is not None:
            raise InvalidPath(f"{label}: a members filter is only supported with remove")
        if op == "replace":
            self.member_changes.append(MemberChange("replace", _member_ids(value, label)))
        elif value not in (None, ""):
            self.member_changes.append(MemberChange("add", _member_ids(value, label)))

    # -- containers -------------------------------------------------------------------------

    def _container(self, urn: str | None, *, create: bool) -> dict | None:
        """The dict holding the target's attributes: the document or an extension object."""
        if urn is None:
            return self.document
        container = self.document.get(urn)
        if isinstance(container, dict):
            return container
        if not create:
            return None
        self.document[urn] = container = {}
        schemas = self.document.get("schemas")
        if isinstance(schemas, list) and urn not in schemas:
            schemas.append(urn)
        return container

    def _tidy(self, resolved: Resolved) -> None:
        """Drop an attribute or extension object the operation left empty."""
        container = self._container(resolved.container, create=False)
        if container is None:
            return
        name = resolved.attribute.name
        if name in container and container[name] in ({}, []):
            del container[name]
        if resolved.container is not None and not container:
            del self.document[resolved.container]
            self._drop_schema(resolved.container)

    def _drop_schema(self, urn: str) -> None:
        schemas = self.document.get("schemas")
        if isinstance(schemas, list) and urn in schemas:
            schemas.remove(urn)


def _read_only(resolved: Resolved) -> bool:
    sub = resolved.sub_attribute
    return resolved.attribute.mutability == definitions.READ_ONLY or (
        sub is not None and sub.mutability == definitions.READ_ONLY
    )


_KINDS = ((bool, "a boolean"), (int | float, "a number"), (str, "a string"), (list, "a list"))


def _kind(value: object) -> str:
    """The JSON name of a value's type, for error details."""
    if value is None:
        return "null"
    return next((name for kind, name in _KINDS if isinstance(value, kind)), "an object")


def _scalar(value: object, label: str) -> object:
    """A single simple value, stored exactly as sent (Entra Q19)."""
    if isinstance(value, list | dict):
        raise InvalidValue(f"{label}: expected a single value, got {_kind(value)}")
    return value


def _list(container: dict, name: str) -> list:
    """The list at ``container[name]``, created (or replacing a non-list) in place."""
    current = container.get(name)
    if not isinstance(current, list):
        current = container[name] = []
    return current


def _dict(container: dict, name: str) -> dict:
    """The object at ``container[name]``, created (or replacing a non-object) in place."""
    current = container.get(name)
    if not isinstance(current, dict):
        current = container[name] = {}
    return current


def _merge(target: dict, new: dict) -> None:
    """Merge sub-attributes into ``target``; null or "" clears one (Entra Q13)."""
    for key, value in new.items():
        if value is None or value == "":
            target.pop(key, None)
        else:
            target[key] = value


def _element_matches(value_filter: Filter, element: object, attribute: AttributeDef) -> bool:
    return isinstance(element, dict) and matches_element(value_filter, element, attribute)


def _in(element: object, elements: list) -> bool:
    """Identity membership: equal-looking elements may differ in whether they matched."""
    return any(element is other for other in elements)


def _covered(element: object, given: list) -> bool:
    """Whether ``element`` carries every sub-attribute of one of the ``given`` elements."""
    for wanted in given:
        if isinstance(wanted, dict) and isinstance(element, dict):
            if wanted and all(element.get(k) == v for k, v in wanted.items()):
                return True
        elif element == wanted:
            return True
    return False


def _one_primary(elements: list, touched: list) -> None:
    """RFC 7644 §3.5.2: setting primary true on a value sets it false on the others."""
    if not any(isinstance(e, dict) and _truthy(e.get("primary")) for e in touched):
        return
    for element in elements:
        if (
            isinstance(element, dict)
            and not _in(element, touched)
            and _truthy(element.get("primary"))
        ):
            element["primary"] = False


def _truthy(value: object) -> bool:
    return value is True or (isinstance(value, str) and value.casefold() == "true")


def _seed(value_filter: Filter, attribute: AttributeDef, label: str) -> dict:
    """The element a filter describes, from its ``eq`` terms (Entra Q4)."""
    if isinstance(value_filter, And):
        return _seed(value_filter.left, attribute, label) | _seed(
            value_filter.right, attribute, label
        )
    if isinstance(value_filter, Compare) and value_filter.op.casefold() == "eq":
        path: AttrPath = value_filter.path
        sub = attribute.sub_attribute(path.attribute) if path.schema is None else None
        if sub is not None and path.sub_attribute is None:
            literal = value_filter.value
            if sub.type == definitions.BOOLEAN and isinstance(literal, str):
                # Entra writes roles[primary eq "True"]: a path literal, not a stored value (Q15).
                literal = {"true": True, "false": False}.get(literal.casefold(), literal)
            return {sub.name: literal}
    raise NoTarget(
        f"{label}: no element matches the filter, and only 'eq' terms joined by 'and' "
        "describe an element to create"
    )


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
                f"{label}[{index}]: a member id must be a non-empty string, got {_kind(member_id)}"
            )
        if member_id not in ids:
            ids.append(member_id)
    return tuple(ids)
