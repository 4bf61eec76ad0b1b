"""The body of ``POST /.search`` (RFC 7644 §3.4.3), loaded into a plain dict.

Key names are case-insensitive like attribute names (RFC 7643 §2.1, Entra Q24); unknown keys and
``null`` values are skipped. The values are only type-checked here: the filter, attribute paths
and paging numbers are interpreted by the modules that own them (a ``startIndex`` below 1 or a
negative ``count`` is clamped by pagination, RFC 7644 §3.4.2.4).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, pre_load

from scim.errors import InvalidSyntax
from scim.schemas import tolerance
from scim.schemas.fields import ScimInteger, ScimList, ScimString, describe, invalid_value

_SORT_ORDERS = ("ascending", "descending")


def _sort_order(value: str) -> None:
    if value.casefold() not in _SORT_ORDERS:
        raise ValidationError(f"expected 'ascending' or 'descending', got {describe(value)}")


class SearchRequestSchema(Schema):
    """A SearchRequest message (RFC 7644 §3.4.3): the query parameters of a GET, as JSON."""

    class Meta:
        unknown = EXCLUDE  # Entra Q22: skip what we do not know

    schemas = ScimList(ScimString())  # never checked against a closed list (Entra Q17)
    attributes = ScimList(ScimString())
    excludedAttributes = ScimList(ScimString())  # noqa: N815 - the RFC's key
    filter = ScimString()
    sortBy = ScimString()  # noqa: N815
    sortOrder = ScimString(validate=_sort_order)  # noqa: N815
    startIndex = ScimInteger()  # noqa: N815
    count = ScimInteger()

    @pre_load
    def _canonical_form(self, data: Any, **kwargs: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        return tolerance.without_absent(tolerance.canonical_keys(data, self.fields.keys()))


# Reused: building a schema deep-copies its fields; loading keeps no state on it.
_SEARCH_REQUEST = SearchRequestSchema()


def load_search_request(payload: object) -> dict:
    """Validate a ``POST /.search`` body and return its parameters under their RFC names.

    :raises InvalidSyntax: if the body is not a JSON object.
    :raises InvalidValue: for a value of the wrong type, e.g. ``startIndex: expected an
        integer, got '1'``.
    """
    if not isinstance(payload, dict):
        raise InvalidSyntax(f"request body: expected a JSON object, got {describe(payload)}")
    try:
        return _SEARCH_REQUEST.load(payload)
    except ValidationError as error:
        raise invalid_value(error) from None
