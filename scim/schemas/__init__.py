"""marshmallow schemas for SCIM request bodies, built from :mod:`scim.definitions`.

Callers use the boundary functions, which return plain dicts and raise only SCIM errors;
marshmallow's ``ValidationError`` never leaves this package.
"""

from scim.schemas.resources import (
    EnterpriseUserSchema,
    GroupSchema,
    UserSchema,
    load_resource,
)
from scim.schemas.search import SearchRequestSchema, load_search_request

__all__ = [
    "EnterpriseUserSchema",
    "GroupSchema",
    "SearchRequestSchema",
    "UserSchema",
    "load_resource",
    "load_search_request",
]
