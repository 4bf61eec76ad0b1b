"""marshmallow schemas for User and Group bodies, built from :mod:`scim.definitions`.

The factory walks the ``AttributeDef`` tables, so what ``/Schemas`` declares is what a POST or
PUT is held to: one field per attribute, its type from ``type``, ``required`` from ``required``,
``dump_only`` for readOnly and ``load_only`` for writeOnly attributes, a nested schema per
complex attribute and a list per multi-valued one (RFC 7643 §2.2-§2.4, §7).

:func:`load_resource` is the boundary the service calls: it returns the canonical document and
raises only SCIM errors.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, pre_load

from scim import definitions
from scim.definitions import AttributeDef, ResourceTypeDef, SchemaDef
from scim.errors import InvalidSyntax, InvalidValue
from scim.schemas import tolerance
from scim.schemas.fields import (
    ScimBoolean,
    ScimComplex,
    ScimDateTime,
    ScimDecimal,
    ScimInteger,
    ScimList,
    ScimString,
    describe,
    identifier,
    invalid_value,
    not_empty,
)

# Attributes people and Entra match on, and names shown for others (paths within their
# schema): no control characters, at most 1024 characters. "displayName" is both the User's
# and the Group's.
IDENTIFIER_PATHS = frozenset(
    {"userName", "displayName", "externalId", "members.value", "members.display", "manager.value"}
)

# RFC 7643 §2.3: the field for each attribute type, except complex (a nested schema).
_SIMPLE_FIELDS: dict[str, type[fields.Field]] = {
    definitions.STRING: ScimString,
    definitions.REFERENCE: ScimString,
    definitions.BINARY: ScimString,
    definitions.DATETIME: ScimDateTime,
    definitions.INTEGER: ScimInteger,
    definitions.DECIMAL: ScimDecimal,
    definitions.BOOLEAN: ScimBoolean,
}


class ScimSchema(Schema):
    """A schema for one SCIM object: a resource, an extension object or a complex value.

    Before loading, it rewrites the tolerated variants of :mod:`scim.schemas.tolerance` on its
    own level; after loading, it drops complex values that came out empty (RFC 7643 §2.5).
    """

    class Meta:
        unknown = EXCLUDE  # Entra Q22: unknown attributes are skipped, never an error
        register = False  # generated classes are referred to by object, not by name

    # Attribute-specific steps for this object, from tolerance.OBJECT_STEPS.
    object_steps: ClassVar[tuple[Callable[[dict[str, object]], dict[str, object]], ...]] = ()

    @pre_load
    def _canonical_form(self, data: Any, **kwargs: Any) -> Any:
        if not isinstance(data, Mapping):
            return data  # ScimComplex (or load_resource) reports the wrong type with its path
        keys, read_only = self._keys
        data = tolerance.canonical_keys(data, keys)
        data = tolerance.without_absent(data)
        # marshmallow treats dump_only fields as unknown; strip them on purpose (Entra A3, A8).
        data = tolerance.without_read_only(data, read_only)
        for step in self.object_steps:
            data = step(data)
        return data

    @functools.cached_property
    def _keys(self) -> tuple[tuple[str, ...], frozenset[str]]:
        """Every attribute's key in a body, and those of the read-only ones (fixed per schema)."""
        keys = {name: field.data_key or name for name, field in self.fields.items()}
        read_only = frozenset(keys[name] for name, field in self.fields.items() if field.dump_only)
        return tuple(keys.values()), read_only

    @post_load
    def _without_empty_values(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        # A complex value whose sub-attributes were all unknown or null loads as {}: absent.
        data = {
            key: [item for item in value if item != {}] if isinstance(value, list) else value
            for key, value in data.items()
        }
        return self.complete(tolerance.without_absent(data))

    def complete(self, data: dict[str, Any]) -> dict[str, Any]:
        """Finish the loaded object; resource schemas add ``schemas`` here."""
        return data


class ResourceSchema(ScimSchema):
    """A whole resource body: common attributes, core attributes and extension objects."""

    resource: ClassVar[ResourceTypeDef]

    def complete(self, data: dict[str, Any]) -> dict[str, Any]:
        """Recompute ``schemas``: the core URN, then each extension that has a value (§3)."""
        extensions = [ext for ext in self.resource.extensions if ext.name in data]
        document: dict[str, Any] = {
            "schemas": [self.resource.schema.id, *(ext.id for ext in extensions)]
        }
        document.update(data)
        for extension in extensions:
            document[extension.id] = document.pop(extension.name)
        return document


@functools.cache
def schema_for(resource: ResourceTypeDef) -> type[ResourceSchema]:
    """The schema class for a resource type's body, built once per resource type."""
    declared: dict[str, fields.Field] = {
        attribute.name: _field(attribute, resource.schema.id, resource.name, attribute.name)
        for attribute in (*definitions.COMMON_ATTRIBUTES, *resource.schema.attributes)
    }
    for extension in resource.extensions:
        # Keyed by name, read from the URN: marshmallow would split the URN's "2.0" on load.
        declared[extension.name] = ScimComplex(extension_schema(extension), data_key=extension.id)
    return _schema_class(
        f"{resource.name}Schema",
        declared,
        base=ResourceSchema,
        doc=f"A {resource.name} body (RFC 7643): {resource.description}.",
        resource=resource,
    )


@functools.cache
def extension_schema(extension: SchemaDef) -> type[ScimSchema]:
    """The schema class for an extension object, found under its URN in a resource."""
    declared = {
        attribute.name: _field(attribute, extension.id, extension.name, attribute.name)
        for attribute in extension.attributes
    }
    return _schema_class(
        f"{extension.name}Schema", declared, doc=f"The {extension.description} extension object."
    )


def load_resource(
    resource: ResourceTypeDef, payload: object, *, previous: dict | None = None
) -> dict:
    """Validate a POST or PUT body and return the canonical document to store.

    Attribute names come back canonical, unknown and read-only attributes are gone, writeOnly
    ones (``password``) are kept, strings are exactly as sent, and ``schemas`` is recomputed.

    :param payload: the parsed JSON body.
    :param previous: the stored document a PATCH started from: an attribute it left as it
        was is not held to :func:`_one_primary` (a value stored before that rule existed must
        not refuse every later PATCH of the resource).
    :raises InvalidSyntax: if the body is not a JSON object.
    :raises InvalidValue: for a wrong type, a missing required attribute, a forbidden
        character or ``primary`` true twice, with a detail that names the attribute, e.g.
        ``userName: required``.
    """
    if not isinstance(payload, dict):
        raise InvalidSyntax(f"request body: expected a JSON object, got {describe(payload)}")
    try:
        document = _loader(resource, _present(resource, payload)).load(payload)
    except ValidationError as error:
        raise invalid_value(error) from None
    _one_primary(resource, document, previous)
    return document


def _one_primary(resource: ResourceTypeDef, document: dict, previous: dict | None) -> None:
    """RFC 7643 §2.4: "The primary attribute value 'true' MUST appear no more than once".

    Refused, not normalised: which value the client meant as primary cannot be guessed, and
    Entra never sends two (it sets one with a filtered path, which clears the others, RFC 7644
    §3.5.2, in :func:`scim.patch.values.one_primary`).

    :raises InvalidValue: naming the attribute and the values marked primary.
    """
    for schema in resource.schemas:
        container = document if schema is resource.schema else document.get(schema.id)
        if not isinstance(container, dict):
            continue
        before = previous if schema is resource.schema else (previous or {}).get(schema.id)
        for attribute in schema.attributes:
            if not attribute.multi_valued or attribute.sub_attribute("primary") is None:
                continue
            values = container.get(attribute.name)
            if not isinstance(values, list):
                continue
            if isinstance(before, dict) and before.get(attribute.name) == values:
                continue
            name = attribute.name if schema is resource.schema else f"{schema.id}:{attribute.name}"
            marked = [
                f"{name}[{index}]"
                for index, value in enumerate(values)
                if isinstance(value, dict) and value.get("primary") is True
            ]
            if len(marked) > 1:
                raise InvalidValue(
                    f"{name}: primary is true on more than one value ({', '.join(marked)}); "
                    "at most one value may be primary (RFC 7643 §2.4)"
                )


def _present(resource: ResourceTypeDef, payload: dict) -> frozenset[str]:
    """The schema's fields a body sets (its keys in any case), and the required ones."""
    by_key, required = _fields_by_key(resource)
    found = {
        by_key[key.casefold()]
        for key in payload
        if isinstance(key, str) and key.casefold() in by_key
    }
    return frozenset(found) | required


@functools.cache
def _fields_by_key(resource: ResourceTypeDef) -> tuple[dict[str, str], frozenset[str]]:
    """Folded body key -> field name, for the loadable fields; and the required fields."""
    schema = schema_for(resource)()
    by_key = {
        (field.data_key or name).casefold(): name for name, field in schema.load_fields.items()
    }
    required = frozenset(name for name, field in schema.load_fields.items() if field.required)
    return by_key, required


@functools.lru_cache(maxsize=256)
def _loader(resource: ResourceTypeDef, fields: frozenset[str]) -> ResourceSchema:
    """A schema instance for bodies setting ``fields``, reused.

    marshmallow visits every declared field for every body, the absent ones too, so a User
    schema limited to the fields a body sets loads it in about half the time; Entra's bodies
    come in a few shapes, so a few instances serve them. Building one deep-copies its fields
    (about half of a create), hence the cache. Loading keeps no state on the instance
    (marshmallow 4 has no context), so threads can share it.
    """
    declared = schema_for(resource)._declared_fields
    return schema_for(resource)(only=[name for name in declared if name in fields])  # in order


def _schema_class(
    name: str,
    declared: dict[str, fields.Field],
    *,
    doc: str,
    base: type[ScimSchema] = ScimSchema,
    **class_attributes: object,
) -> type[Any]:
    namespace = {**declared, **class_attributes, "__doc__": doc, "__module__": __name__}
    return type(name, (base,), namespace)


def _field(attribute: AttributeDef, schema_id: str, owner: str, path: str) -> fields.Field:
    """The field for one attribute: a list of values if multi-valued, else one value."""
    options: dict[str, Any] = {
        "required": attribute.required,
        "dump_only": attribute.mutability == definitions.READ_ONLY,
        "load_only": attribute.mutability == definitions.WRITE_ONLY,
    }
    if attribute.multi_valued:
        item = _value_field(attribute, schema_id, owner, path, {})
        return ScimList(item, pre_load=tolerance.as_list, **options)
    return _value_field(attribute, schema_id, owner, path, options)


def _value_field(
    attribute: AttributeDef, schema_id: str, owner: str, path: str, options: dict[str, Any]
) -> fields.Field:
    """The field for one value of an attribute, with its tolerance steps and validators."""
    pre_load_steps: list[Callable[[Any], Any]] = []
    if attribute.type == definitions.BOOLEAN:
        pre_load_steps.append(tolerance.boolean_from_string)  # Entra Q2
    value_step = tolerance.VALUE_STEPS.get((schema_id, attribute.name))
    if value_step is not None:
        pre_load_steps.append(value_step)

    if attribute.type == definitions.COMPLEX:
        object_step = tolerance.OBJECT_STEPS.get((schema_id, attribute.name))
        class_name = f"{owner}{attribute.name[0].upper()}{attribute.name[1:]}"
        nested = _schema_class(
            f"{class_name}Schema",
            {
                sub.name: _field(sub, schema_id, class_name, f"{path}.{sub.name}")
                for sub in attribute.sub_attributes
            },
            doc=f"One value of {path}: {attribute.description}",
            object_steps=(object_step,) if object_step else (),
        )
        return ScimComplex(nested, pre_load=pre_load_steps, **options)

    field_class = _SIMPLE_FIELDS.get(attribute.type)
    if field_class is None:
        raise ValueError(f"{path}: no field for attribute type {attribute.type!r}")
    return field_class(pre_load=pre_load_steps, validate=_validators(attribute, path), **options)


def _validators(attribute: AttributeDef, path: str) -> Iterable[Callable[[Any], None]]:
    validators: list[Callable[[Any], None]] = []
    if attribute.required and attribute.type == definitions.STRING:
        validators.append(not_empty)
    if path in IDENTIFIER_PATHS:
        validators.append(identifier)
    return validators


# The three body shapes a client sends, as named classes for readers and callers.
UserSchema = schema_for(definitions.USER_RESOURCE)
EnterpriseUserSchema = extension_schema(definitions.ENTERPRISE_USER_SCHEMA)
GroupSchema = schema_for(definitions.GROUP_RESOURCE)
