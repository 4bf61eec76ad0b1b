"""Apply a SCIM PATCH (RFC 7644 §3.5.2) to a resource document, Entra's dialects included.

:func:`apply_patch` is a pure function: it patches a deep copy and returns it, so an error in
any operation leaves the caller's document untouched (RFC 7644 §3.5.2: PATCH is atomic). It
does not coerce scalar types ("False" stays a string): the service re-validates the whole
patched document with the resource schema afterwards. Group membership is not written into
the document; it comes back as :class:`MemberChange` records, because storage keeps members
as their own relation.

This module addresses targets and walks the operations; :mod:`scim.patch.members` translates
operations on ``members`` and :mod:`scim.patch.values` holds the rules for the values written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from scim import definitions
from scim.definitions import ResourceTypeDef
from scim.errors import InvalidPath, InvalidValue, Mutability, NoTarget, ScimError, TooMany
from scim.filter import Filter, validate_element
from scim.patch.members import MemberChange, is_members, member_change
from scim.patch.path import parse_patch_path
from scim.patch.values import (
    complex_value,
    covered,
    dict_at,
    element_test,
    frozen,
    json_kind,
    list_at,
    merge,
    new_element,
    one_primary,
    scalar,
    seed,
)
from scim.paths import Resolved, parse_attr_path, resolve, split_urn
from storage.values import clone

OPS = ("add", "replace", "remove")

# The most values of multi-valued attributes one PATCH may compare: each operation with a
# value filter, a duplicate check or a removal scans the attribute it writes, so many
# operations on an attribute of many values cost their product (14,000 value-filter writes
# on a user's 12,000 emails held the server for over seven minutes). Entra's PATCH makes
# tens of comparisons; 100,000 take about a second, and past them the PATCH is refused.
MAX_COMPARISONS = 100_000


@dataclass(frozen=True)
class Operation:
    """One PATCH operation: ``op`` is lowercase add/replace/remove (Entra Q1)."""

    op: str
    path: str | None = None
    value: object = None


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
    patcher = _Patcher(clone(document), resource)
    for index, operation in enumerate(operations):
        changes = len(patcher.member_changes)
        try:
            patcher.apply(operation)
        except ScimError as error:
            raise type(error)(f"Operations[{index}]: {error.detail}") from error
        patcher.member_changes[changes:] = [
            replace(change, place=f"Operations[{index}]: members")
            for change in patcher.member_changes[changes:]
        ]
    return PatchResult(patcher.document, patcher.member_changes, patcher.skipped)


def blame_operation(
    document: dict,
    operations: list[Operation],
    resource: ResourceTypeDef,
    validate: Callable[[dict], object],
    error: ScimError,
) -> ScimError:
    """``error``, raised by ``validate`` on the whole patched ``document``, as the error of the
    operation that caused it: ``Operations[2]: active: expected a boolean, got 'maybe'``.

    The schema checks the patched resource, not each operation, so its detail alone names an
    attribute but not which of Entra's tens of operations to look at. Prefixes of the
    operations are re-applied and validated, halving the range each time, for the shortest
    one refused with the same (first) problem: the operation that ends it is the one to fix.
    An earlier problem that a later operation repaired is not the one reported. Only a
    refused PATCH pays for this: a logarithmic number of re-applications.
    """
    problem = _first_problem(error)
    shorter, refused = 0, len(operations)  # prefix lengths; 0: the resource as stored
    found = error
    while refused - shorter > 1:
        middle = (shorter + refused) // 2
        try:
            validate(apply_patch(document, operations[:middle], resource).document)
        except ScimError as prefix_error:
            if _first_problem(prefix_error) == problem:
                refused, found = middle, prefix_error
                continue
        shorter = middle
    return type(found)(f"Operations[{refused - 1}]: {found.detail}")


def blame_change(
    document: dict,
    operations: list[Operation],
    resource: ResourceTypeDef,
    attribute: str,
    error: ScimError,
) -> ScimError:
    """``error``, about the value the patched ``document`` ends with in its top-level
    ``attribute``, as the error of the operation that last changed that value:
    ``Operations[1]: userName 'bob' is already used by another user ...`` (a 409).

    Storage finds a unique value taken only when the whole result is written, so the error
    alone does not say which of the operations set it: a path-less replace, a ``userName``
    path, or one of several that each set it. The operations are applied once more, one
    after another on one copy; the error comes back as it was if none changed the value.
    """
    patcher = _Patcher(clone(document), resource)
    value = patcher.document.get(attribute)
    blamed = None
    for index, operation in enumerate(operations):
        patcher.apply(operation)
        now = patcher.document.get(attribute)
        if now != value:
            blamed, value = index, now
    if blamed is None:
        return error
    return type(error)(f"Operations[{blamed}]: {error.detail}")


def _first_problem(error: ScimError) -> str:
    # invalid_value joins the problems it found with "; ", in the order of the schema.
    return error.detail.split("; ", 1)[0]


class _Patcher:
    """The state of one PATCH: the working copy and what was collected on the way."""

    def __init__(self, document: dict, resource: ResourceTypeDef) -> None:
        self.document = document
        self.resource = resource
        self.member_changes: list[MemberChange] = []
        self.skipped: list[str] = []
        self.comparisons = 0

    def apply(self, operation: Operation) -> None:
        """Apply one operation (``op`` compared case-insensitively, Entra Q1)."""
        op = operation.op.casefold() if isinstance(operation.op, str) else operation.op
        if op not in OPS:
            raise InvalidValue(f"op: {operation.op!r} is not one of add, replace, remove")
        # The value is copied so the result never aliases the caller's request body.
        value = clone(operation.value)
        path = operation.path
        if path is None:
            if op == "remove":
                raise NoTarget("remove needs a path (RFC 7644 §3.5.2.2)")
            if not isinstance(value, dict):
                raise InvalidValue(
                    f"value: a path-less {op} needs an object, got {json_kind(value)}"
                )
            self._apply_object(op, None, value)
        elif not isinstance(path, str):
            raise InvalidPath(f"path: expected a string, got {json_kind(path)}")
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
                    raise InvalidValue(f"{label}: expected an object, got {json_kind(item)}")
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
                raise InvalidValue(f"{text}: expected an object, got {json_kind(value)}")
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
        if value_filter is not None:
            # Whatever the resource holds, as a GET's filter is: a comparison the types
            # refuse (emails[primary eq "yes"]) was a 400 only on a user with emails.
            validate_element(value_filter, resolved.attribute)
        self._dispatch(op, resolved, value_filter, value, text)

    def _dispatch(
        self, op: str, resolved: Resolved, value_filter: Filter | None, value: object, label: str
    ) -> None:
        """Route one resolved target to the member, remove or write logic."""
        if is_members(self.resource, resolved):
            change = member_change(op, resolved, value_filter, value, label)
            if change is not None:
                self.member_changes.append(change)
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
            elements = list_at(container, attribute.name)
            self._compare(len(elements), attribute.name)
            matches = element_test(value_filter, attribute)
            matched = [e for e in elements if matches(e)]
            if not matched:
                # Entra Q4: a filtered write with no match creates the element, so several
                # ops with the same filter land in one element.
                matched = [seed(value_filter, attribute, label)]
                elements.append(matched[0])
            new = (
                {sub.name: scalar(value, label)}
                if sub
                else complex_value(attribute, value, label, self.skipped)
            )
            for element in matched:
                merge(element, new)
            one_primary(elements, matched)
        elif sub is not None and attribute.multi_valued:
            # "emails.value" without a filter addresses every element.
            elements = list_at(container, attribute.name)
            self._compare(len(elements), attribute.name)
            if not elements:
                elements.append({})
            for element in elements:
                if isinstance(element, dict):
                    element[sub.name] = scalar(value, label)
        elif sub is not None:
            dict_at(container, attribute.name)[sub.name] = scalar(value, label)
        elif attribute.multi_valued:
            items = value if isinstance(value, list) else [value]
            new_elements = [
                new_element(attribute, item, f"{label}[{i}]", self.skipped)
                for i, item in enumerate(items)
            ]
            # RFC 7644 §3.5.2.1: add appends, skipping values already there; replace swaps
            # the whole list (§3.5.2.3).
            elements = [] if op == "replace" else list_at(container, attribute.name)
            # Duplicates are found in one pass over the values there and the new ones.
            self._compare(len(elements) + len(new_elements), attribute.name)
            present = {frozen(element) for element in elements}
            added = []
            for element in new_elements:
                key = frozen(element)
                if element not in (None, {}) and key not in present:
                    present.add(key)
                    elements.append(element)
                    added.append(element)
            container[attribute.name] = elements
            one_primary(elements, added)
        elif attribute.type == definitions.COMPLEX:
            # RFC 7644 §3.5.2.1/3: an object merges into a complex attribute.
            merge(
                dict_at(container, attribute.name),
                complex_value(attribute, value, label, self.skipped),
            )
        else:
            container[attribute.name] = scalar(value, label)

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
            self._compare(len(elements), attribute.name)
            matches = None if value_filter is None else element_test(value_filter, attribute)
            targets = [e for e in elements if matches is None or matches(e)]
            if sub is not None:
                for element in targets:
                    if isinstance(element, dict):
                        element.pop(sub.name, None)
                container[attribute.name] = [e for e in elements if e != {}]
            else:
                # By identity, as is_among does, but in one pass: equal-looking elements may
                # differ in whether they matched.
                removed = {id(target) for target in targets}
                container[attribute.name] = [e for e in elements if id(e) not in removed]
        elif sub is not None:
            if isinstance(current, dict):
                current.pop(sub.name, None)
        elif attribute.multi_valued and isinstance(current, list) and value not in (None, ""):
            # Not RFC, but the shape Entra uses for members (Q5): remove just the given values.
            items = value if isinstance(value, list) else [value]
            given = [
                new_element(attribute, item, f"{label}[{i}]", self.skipped)
                for i, item in enumerate(items)
            ]
            self._compare(len(current) * len(given), attribute.name)
            container[attribute.name] = [e for e in current if not covered(e, given)]
        else:
            del container[attribute.name]

    def _compare(self, count: int, name: str) -> None:
        """Count ``count`` more comparisons of values of ``name``; refuse past the limit."""
        self.comparisons += count
        if self.comparisons > MAX_COMPARISONS:
            raise TooMany(
                f"{name}: this PATCH compares more than {MAX_COMPARISONS:,} values of "
                "multi-valued attributes (operations times the values each one scans); "
                "send fewer operations or fewer values"
            )

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
