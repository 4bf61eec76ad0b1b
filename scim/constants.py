"""Schema URNs and other protocol constants, named once."""

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE_USER = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"

SERVICE_PROVIDER_CONFIG = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
RESOURCE_TYPE = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Schema"

LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH_REQUEST = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"

# Entra puts this private URI beside the core Group schema on group create (Entra Q17).
MICROSOFT_GROUP = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"

SCIM_MEDIA_TYPE = "application/scim+json"

# The longest integer read from a body, a filter or a query parameter: int() of a longer digit
# string is slow (CVE-2020-10735), and Python refuses those over 4,300 digits outright.
MAX_INTEGER_DIGITS = 1000

# Resource type names as they appear in meta.resourceType and the storage layer.
USER_TYPE = "User"
GROUP_TYPE = "Group"
