"""SCIM filters (RFC 7644 §3.4.2.2): parse text into a tree, evaluate the tree on documents.

- :mod:`scim.filter.tree`: one frozen dataclass per kind of expression, rendered back to text;
- :mod:`scim.filter.parser`: lexing and parsing, with errors that give the position;
- :mod:`scim.filter.evaluate`: matching documents and multi-valued elements, typed by the
  attributes' definitions.

Imports point one way: tree <- parser, tree <- evaluate; all three build on
:mod:`scim.paths` (attribute paths) and :mod:`scim.definitions`, and nothing here imports
the service, the API or storage. Callers import from this package.
"""

from scim.filter.evaluate import (
    INDEXABLE_ATTRIBUTES,
    equality_terms,
    matcher,
    matches,
    matches_element,
    validate,
)
from scim.filter.parser import COMPARE_OPERATORS, parse_filter, parse_value_filter
from scim.filter.tree import (
    And,
    Compare,
    CompareValue,
    Filter,
    Not,
    Or,
    Present,
    ValuePathFilter,
    top_level_paths,
)

__all__ = [
    "COMPARE_OPERATORS",
    "INDEXABLE_ATTRIBUTES",
    "And",
    "Compare",
    "CompareValue",
    "Filter",
    "Not",
    "Or",
    "Present",
    "ValuePathFilter",
    "equality_terms",
    "matcher",
    "matches",
    "matches_element",
    "parse_filter",
    "parse_value_filter",
    "top_level_paths",
    "validate",
]
