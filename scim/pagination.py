"""Sorting and paging of query results (RFC 7644 §3.4.2.3, §3.4.2.4) and the ListResponse.

``totalResults`` is the number of matches before the page is cut: count first, then slice
(counting after slicing was a bug in scim2-server 0.1). Entra's account discovery walks
``startIndex``/``count`` pages (A16); it never sorts (A20), but other clients may.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from scim import constants, definitions
from scim.definitions import AttributeDef, ResourceTypeDef
from scim.errors import InvalidValue, quoted
from scim.paths import AttrPath, lookup, resolve

_INTEGER = re.compile(r"[+-]?[0-9]+")


@dataclass(frozen=True)
class Page:
    """The 1-based ``start_index`` and the page size ``count`` (None: the server default)."""

    start_index: int
    count: int | None

    def cut(self, items: list) -> list:
        """The items of this page, from a list of every match."""
        start = self.start_index - 1
        return items[start:] if self.count is None else items[start : start + self.count]


def parse_paging(
    start_index: str | int | None, count: str | int | None, *, max_results: int
) -> Page:
    """The page that ``startIndex`` and ``count`` ask for, clamped as RFC 7644 §3.4.2.4 says.

    A ``startIndex`` below 1 means 1; a negative ``count`` means 0; a missing ``count`` or one
    above ``max_results`` means ``max_results``.

    :raises InvalidValue: a value is not an integer.
    """
    start = _integer("startIndex", start_index)
    size = _integer("count", count)
    return Page(
        start_index=1 if start is None or start < 1 else start,
        count=max_results if size is None else min(max(size, 0), max_results),
    )


def _integer(parameter: str, value: str | int | None) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if not isinstance(value, str) or _INTEGER.fullmatch(value.strip()) is None:
        shown = quoted(value) if isinstance(value, str) else repr(value)
        raise InvalidValue(f"{parameter}: expected an integer, got {shown}")
    if len(value.strip().lstrip("+-")) > constants.MAX_INTEGER_DIGITS:
        raise InvalidValue(f"{parameter}: more than {constants.MAX_INTEGER_DIGITS} digits")
    return int(value)


def parse_sort_order(text: str | None) -> bool:
    """True for ascending (also the default, RFC 7644 §3.4.2.3), False for descending.

    :raises InvalidValue: anything but "ascending" or "descending" (any case).
    """
    if text is None or not text.strip():
        return True
    folded = text.strip().casefold()
    if folded in ("ascending", "descending"):
        return folded == "ascending"
    raise InvalidValue(f"sortOrder: expected 'ascending' or 'descending', got {quoted(text)}")


def check_sort_by(sort_by: AttrPath, resource: ResourceTypeDef) -> None:
    """Refuse a ``sortBy`` whose order would reveal what no response may show.

    :raises InvalidValue: ``sort_by`` names an attribute returned "never" (RFC 7643 §7), such
        as ``password``: the order of the results would leak its (hashed) value.
    """
    resolved = resolve(sort_by, resource)
    if resolved is not None and resolved.never_returned:
        raise InvalidValue(
            f"sortBy: '{sort_by}' is never returned (returned \"never\", RFC 7643 §7), so "
            "results cannot be sorted by it: their order would reveal its value"
        )


def sort_documents(
    documents: list[dict], sort_by: AttrPath | None, ascending: bool, resource: ResourceTypeDef
) -> list[dict]:
    """``documents`` sorted by the value at ``sort_by``; a new list, stable.

    Strings compare case-insensitively unless the attribute is caseExact, dateTimes
    chronologically; a multi-valued attribute sorts by its primary value, else its first.
    Documents without a value come last in ascending order and first in descending (RFC 7644
    §3.4.2.3). An attribute the resource does not have leaves the order as it is.
    """
    key = sort_key(sort_by, resource) if sort_by is not None else None
    if key is None:
        return list(documents)
    # reverse=True keeps equal keys in input order, and puts the (1,) of missing values first.
    return sorted(documents, key=key, reverse=not ascending)


def sort_mixed(
    items: list[tuple[ResourceTypeDef, dict]], sort_by: AttrPath, ascending: bool
) -> list[tuple[ResourceTypeDef, dict]]:
    """Documents of several resource types sorted by ``sort_by``, as :func:`sort_documents`.

    A type that lacks the attribute sorts its documents as if they had no value (RFC 7644
    §3.4.3: a search at the service root spans every type).
    """
    keys = {resource.name: sort_key(sort_by, resource) for resource, _ in items}

    def key(item: tuple[ResourceTypeDef, dict]) -> tuple:
        resource, document = item
        of_type = keys[resource.name]
        return (1,) if of_type is None else of_type(document)

    return sorted(items, key=key, reverse=not ascending)


def sort_key(sort_by: AttrPath, resource: ResourceTypeDef) -> Callable[[dict], tuple] | None:
    """The key that sorts documents of ``resource`` by ``sort_by`` (None: it has no such
    attribute); documents without a value get ``(1,)``, after every value."""
    resolved = resolve(sort_by, resource)
    if resolved is None:
        return None
    attribute, sub = resolved.attribute, resolved.sub_attribute
    if sub is None and attribute.type == definitions.COMPLEX:
        sub = attribute.sub_attribute("value")  # "emails" sorts by the emails' value
        if sub is None:
            return None
    container = resolved.container

    def key(document: dict) -> tuple:
        value = _sort_value(document, container, attribute, sub)
        if value is None:
            return (1,)
        return (0, *_comparable(value, sub or attribute))

    return key


def _sort_value(
    document: dict, container: str | None, attribute: AttributeDef, sub: AttributeDef | None
) -> object:
    holder = document if container is None else lookup(document, container)
    if not isinstance(holder, dict):
        return None
    value = lookup(holder, attribute.name)
    if attribute.multi_valued:
        items = [item for item in value if item is not None] if isinstance(value, list) else []
        primary = [item for item in items if isinstance(item, dict) and item.get("primary") is True]
        value = (primary or items or [None])[0]
    if sub is not None:
        value = lookup(value, sub.name) if isinstance(value, dict) else None
    return None if value == "" else value


def _comparable(value: object, definition: AttributeDef) -> tuple:
    """A (rank, key) pair; the rank keeps values of different kinds from being compared."""
    if isinstance(value, bool):
        return (0, value)
    if isinstance(value, int | float):
        return (1, value)
    if isinstance(value, str):
        if definition.type == definitions.DATETIME:
            moment = _datetime(value)
            if moment is not None:
                return (2, moment)
        return (3, value if definition.case_exact else value.casefold())
    return (4, repr(value))


def _datetime(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    # Naive and aware datetimes cannot be compared; RFC 7643 §2.3.5 times carry a zone anyway.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def list_response(resources: list[dict], total: int, start_index: int) -> dict:
    """A ListResponse (RFC 7644 §3.4.2): ``total`` counts every match, not just this page."""
    return {
        "schemas": [constants.LIST_RESPONSE],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }
