"""Schema definitions (RFC 7643 §2, §4, §7): what each resource's attributes are.

These tables are the single description of the resource shapes. ``/Schemas`` renders them,
the attribute-path resolver reads them (case-insensitive names, sub-attributes, types,
caseExact), and the marshmallow schemas in :mod:`scim.schemas` are built from them, so the
definitions a client discovers are the rules the server enforces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from scim import constants

STRING = "string"
BOOLEAN = "boolean"
DECIMAL = "decimal"
INTEGER = "integer"
DATETIME = "dateTime"
BINARY = "binary"
REFERENCE = "reference"
COMPLEX = "complex"

READ_ONLY = "readOnly"
READ_WRITE = "readWrite"
IMMUTABLE = "immutable"
WRITE_ONLY = "writeOnly"

ALWAYS = "always"
NEVER = "never"
DEFAULT = "default"
REQUEST = "request"


@dataclass(frozen=True)
class AttributeDef:
    """One attribute or sub-attribute, with the characteristics of RFC 7643 §2.2 and §7."""

    name: str
    type: str = STRING
    multi_valued: bool = False
    required: bool = False
    case_exact: bool = False
    mutability: str = READ_WRITE
    returned: str = DEFAULT
    uniqueness: str = "none"
    description: str = ""
    sub_attributes: tuple[AttributeDef, ...] = ()
    canonical_values: tuple[str, ...] = ()
    reference_types: tuple[str, ...] = ()

    def sub_attribute(self, name: str) -> AttributeDef | None:
        """The sub-attribute called ``name`` (case-insensitive, RFC 7643 §2.1), if any."""
        return self._sub_attributes_by_name.get(name.casefold())

    @cached_property
    def _sub_attributes_by_name(self) -> dict[str, AttributeDef]:
        # Looked up for every value of every response and payload: a dict, not a scan.
        return _by_folded_name(self.sub_attributes)

    def to_scim(self) -> dict:
        """The attribute as a ``/Schemas`` attribute object (no nulls, camelCase values)."""
        rendered: dict = {
            "name": self.name,
            "type": self.type,
            "multiValued": self.multi_valued,
            "description": self.description,
            "required": self.required,
        }
        if self.type in (STRING, REFERENCE, BINARY):
            rendered["caseExact"] = self.case_exact
        if self.canonical_values:
            rendered["canonicalValues"] = list(self.canonical_values)
        if self.reference_types:
            rendered["referenceTypes"] = list(self.reference_types)
        rendered["mutability"] = self.mutability
        rendered["returned"] = self.returned
        if self.type not in (COMPLEX, BOOLEAN):
            rendered["uniqueness"] = self.uniqueness
        if self.sub_attributes:
            rendered["subAttributes"] = [sub.to_scim() for sub in self.sub_attributes]
        return rendered


@dataclass(frozen=True)
class SchemaDef:
    """A schema (core or extension) and its top-level attributes."""

    id: str
    name: str
    description: str
    attributes: tuple[AttributeDef, ...] = field(default_factory=tuple)

    def attribute(self, name: str) -> AttributeDef | None:
        """The top-level attribute called ``name`` (case-insensitive), if any."""
        return self._attributes_by_name.get(name.casefold())

    @cached_property
    def _attributes_by_name(self) -> dict[str, AttributeDef]:
        return _by_folded_name(self.attributes)

    def to_scim(self, location: str) -> dict:
        """The schema as a ``/Schemas`` resource."""
        return {
            "schemas": [constants.SCHEMA],
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "attributes": [attribute.to_scim() for attribute in self.attributes],
            "meta": {"resourceType": "Schema", "location": location},
        }


@dataclass(frozen=True, eq=False)
class ResourceTypeDef:
    """A resource type (RFC 7643 §6): its endpoint, core schema and extensions.

    Compared and hashed by identity: each is built once, and it keys the cached marshmallow
    loaders of every request. A field-wise hash walked every attribute definition each time.
    """

    name: str
    endpoint: str
    description: str
    schema: SchemaDef
    extensions: tuple[SchemaDef, ...] = ()

    @cached_property
    def schemas(self) -> tuple[SchemaDef, ...]:
        """The core schema, then every extension."""
        return (self.schema, *self.extensions)

    def schema_by_id(self, urn: str) -> SchemaDef | None:
        """The core or extension schema whose id is ``urn`` (case-insensitive), if any."""
        return self._schemas_by_id.get(urn.casefold())

    @cached_property
    def _schemas_by_id(self) -> dict[str, SchemaDef]:
        return {schema.id.casefold(): schema for schema in self.schemas}

    def to_scim(self, location: str) -> dict:
        """The resource type as a ``/ResourceTypes`` resource."""
        return {
            "schemas": [constants.RESOURCE_TYPE],
            "id": self.name,
            "name": self.name,
            "endpoint": self.endpoint,
            "description": self.description,
            "schema": self.schema.id,
            "schemaExtensions": [
                {"schema": extension.id, "required": False} for extension in self.extensions
            ],
            "meta": {"resourceType": "ResourceType", "location": location},
        }


def _by_folded_name(attributes: tuple[AttributeDef, ...]) -> dict[str, AttributeDef]:
    return {attribute.name.casefold(): attribute for attribute in attributes}


def _multi(
    name: str,
    description: str,
    types: tuple[str, ...],
    value_type: str = STRING,
    with_value: bool = True,
    reference_types: tuple[str, ...] = (),
) -> AttributeDef:
    """A multi-valued complex attribute with the usual value/display/type/primary sub-attributes."""
    subs: list[AttributeDef] = []
    if with_value:
        subs.append(
            AttributeDef(
                "value",
                type=value_type,
                description=f"The {name} value.",
                reference_types=reference_types,
            )
        )
    subs += [
        AttributeDef("display", description="A human-readable name, for display only."),
        AttributeDef(
            "type", description="A label for the value's function.", canonical_values=types
        ),
        AttributeDef("primary", type=BOOLEAN, description="Whether this is the preferred value."),
    ]
    return AttributeDef(
        name,
        type=COMPLEX,
        multi_valued=True,
        description=description,
        sub_attributes=tuple(subs),
    )


# Attributes every resource has (RFC 7643 §3.1). /Schemas does not list them, as in the RFC's
# own §8.7 representation, but filters, sorting and projection resolve them like any other.
COMMON_ATTRIBUTES: tuple[AttributeDef, ...] = (
    AttributeDef(
        "id",
        case_exact=True,
        mutability=READ_ONLY,
        returned=ALWAYS,
        uniqueness="server",
        description="Unique identifier assigned by the service provider.",
    ),
    AttributeDef(
        "externalId",
        case_exact=True,
        description="Identifier assigned by the provisioning client (Entra's objectId).",
    ),
    AttributeDef(
        "meta",
        type=COMPLEX,
        mutability=READ_ONLY,
        description="Resource metadata.",
        sub_attributes=(
            AttributeDef("resourceType", case_exact=True, mutability=READ_ONLY),
            AttributeDef("created", type=DATETIME, mutability=READ_ONLY),
            AttributeDef("lastModified", type=DATETIME, mutability=READ_ONLY),
            AttributeDef("location", type=REFERENCE, case_exact=True, mutability=READ_ONLY),
            AttributeDef("version", case_exact=True, mutability=READ_ONLY),
        ),
    ),
)
_COMMON_BY_NAME = _by_folded_name(COMMON_ATTRIBUTES)


def common_attribute(name: str) -> AttributeDef | None:
    """The common attribute (RFC 7643 §3.1: id, externalId, meta) called ``name``, any case."""
    return _COMMON_BY_NAME.get(name.casefold())


USER_SCHEMA = SchemaDef(
    id=constants.USER,
    name="User",
    description="User Account",
    attributes=(
        AttributeDef(
            "userName",
            required=True,
            uniqueness="server",
            description="Unique identifier for the user, typically used to sign in. "
            "Compared case-insensitively.",
        ),
        AttributeDef(
            "name",
            type=COMPLEX,
            description="The components of the user's real name.",
            sub_attributes=(
                AttributeDef("formatted", description="The full name, formatted for display."),
                AttributeDef("familyName", description="The family name."),
                AttributeDef("givenName", description="The given name."),
                AttributeDef("middleName", description="The middle name(s)."),
                AttributeDef("honorificPrefix", description="Honorific prefix, e.g. 'Ms.'."),
                AttributeDef("honorificSuffix", description="Honorific suffix, e.g. 'III'."),
            ),
        ),
        AttributeDef("displayName", description="The name of the user, suitable for display."),
        AttributeDef("nickName", description="The casual way to address the user."),
        AttributeDef(
            "profileUrl",
            type=REFERENCE,
            reference_types=("external",),
            description="A URI of the user's online profile.",
        ),
        AttributeDef("title", description="The user's title, such as 'Vice President'."),
        AttributeDef("userType", description="The relationship to the organisation."),
        AttributeDef("preferredLanguage", description="Preferred language, as in Accept-Language."),
        AttributeDef("locale", description="Default location for localisation, e.g. 'en-US'."),
        AttributeDef("timezone", description="Time zone in IANA format, e.g. 'Europe/Paris'."),
        AttributeDef(
            "active",
            type=BOOLEAN,
            description="Whether the account may sign in. Disabled users stay visible.",
        ),
        AttributeDef(
            "password",
            case_exact=True,
            mutability=WRITE_ONLY,
            returned=NEVER,
            description="The user's clear-text password on write; never stored in clear "
            "and never returned.",
        ),
        _multi("emails", "Email addresses.", ("work", "home", "other")),
        _multi(
            "phoneNumbers", "Phone numbers.", ("work", "home", "mobile", "fax", "pager", "other")
        ),
        _multi(
            "ims",
            "Instant messaging addresses.",
            ("aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"),
        ),
        _multi(
            "photos",
            "URLs of images of the user.",
            ("photo", "thumbnail"),
            value_type=REFERENCE,
            reference_types=("external",),
        ),
        AttributeDef(
            "addresses",
            type=COMPLEX,
            multi_valued=True,
            description="Physical mailing addresses.",
            sub_attributes=(
                AttributeDef("formatted", description="The full mailing address."),
                AttributeDef("streetAddress", description="The street address."),
                AttributeDef("locality", description="The city or locality."),
                AttributeDef("region", description="The state or region."),
                AttributeDef("postalCode", description="The zip or postal code."),
                AttributeDef("country", description="The country, ISO 3166-1 alpha-2."),
                AttributeDef(
                    "type",
                    description="The kind of address.",
                    canonical_values=("work", "home", "other"),
                ),
                AttributeDef("primary", type=BOOLEAN, description="The preferred address."),
            ),
        ),
        AttributeDef(
            "groups",
            type=COMPLEX,
            multi_valued=True,
            mutability=READ_ONLY,
            description="The groups the user belongs to, kept by the server.",
            sub_attributes=(
                AttributeDef("value", mutability=READ_ONLY, description="The group's id."),
                AttributeDef(
                    "$ref",
                    type=REFERENCE,
                    mutability=READ_ONLY,
                    reference_types=("Group",),
                    description="The URI of the group.",
                ),
                AttributeDef("display", mutability=READ_ONLY, description="The group's name."),
                AttributeDef(
                    "type",
                    mutability=READ_ONLY,
                    canonical_values=("direct", "indirect"),
                    description="How the user is a member.",
                ),
            ),
        ),
        _multi("entitlements", "Entitlements of the user.", ()),
        _multi("roles", "Roles of the user.", ()),
        _multi("x509Certificates", "Certificates of the user.", (), value_type=BINARY),
    ),
)

ENTERPRISE_USER_SCHEMA = SchemaDef(
    id=constants.ENTERPRISE_USER,
    name="EnterpriseUser",
    description="Enterprise User",
    attributes=(
        AttributeDef("employeeNumber", description="Identifier assigned by the organisation."),
        AttributeDef("costCenter", description="Name of a cost center."),
        AttributeDef("organization", description="Name of an organisation."),
        AttributeDef("division", description="Name of a division."),
        AttributeDef("department", description="Name of a department."),
        AttributeDef(
            "manager",
            type=COMPLEX,
            description="The user's manager. Entra may send a bare id; it is returned as "
            '{"value": id}.',
            sub_attributes=(
                AttributeDef("value", description="The id of the manager's User resource."),
                AttributeDef(
                    "$ref",
                    type=REFERENCE,
                    reference_types=("User",),
                    description="The URI of the manager's User resource.",
                ),
                AttributeDef(
                    "displayName", mutability=READ_ONLY, description="The manager's display name."
                ),
            ),
        ),
    ),
)

GROUP_SCHEMA = SchemaDef(
    id=constants.GROUP,
    name="Group",
    description="Group",
    attributes=(
        AttributeDef(
            "displayName",
            required=True,
            uniqueness="server",
            description="A human-readable name for the group. Unique, compared "
            "case-insensitively (Entra matches groups on it).",
        ),
        AttributeDef(
            "members",
            type=COMPLEX,
            multi_valued=True,
            description="The members of the group: users only (no nested groups).",
            sub_attributes=(
                AttributeDef(
                    "value",
                    case_exact=True,
                    mutability=IMMUTABLE,
                    description="The id of the member's User resource.",
                ),
                AttributeDef(
                    "$ref",
                    type=REFERENCE,
                    mutability=IMMUTABLE,
                    reference_types=("User",),
                    description="The URI of the member.",
                ),
                AttributeDef(
                    "type",
                    mutability=IMMUTABLE,
                    canonical_values=("User",),
                    description="The member's resource type.",
                ),
                AttributeDef(
                    "display",
                    mutability=IMMUTABLE,
                    description="The member's name: as the client sent it with the member, "
                    "else the user's current displayName (else userName).",
                ),
            ),
        ),
    ),
)

USER_RESOURCE = ResourceTypeDef(
    name=constants.USER_TYPE,
    endpoint="/Users",
    description="User Account",
    schema=USER_SCHEMA,
    extensions=(ENTERPRISE_USER_SCHEMA,),
)

GROUP_RESOURCE = ResourceTypeDef(
    name=constants.GROUP_TYPE,
    endpoint="/Groups",
    description="Group",
    schema=GROUP_SCHEMA,
)

RESOURCE_TYPES: dict[str, ResourceTypeDef] = {
    USER_RESOURCE.name: USER_RESOURCE,
    GROUP_RESOURCE.name: GROUP_RESOURCE,
}

SCHEMAS: dict[str, SchemaDef] = {
    schema.id: schema for schema in (USER_SCHEMA, ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA)
}
