"""SCIM filters (RFC 7644 §3.4.2.2): parse text into a tree, compile the tree into a test.

- :mod:`scim.filter.tree`: one frozen dataclass per kind of expression, rendered back to text;
- :mod:`scim.filter.parser`: lexing and parsing, with errors that give the position;
- :mod:`scim.filter.compare`: one comparison, typed by the attribute's definition;
- :mod:`scim.filter.evaluate`: the tree compiled into a test of documents or of the
  elements of a multi-valued attribute.

Imports point one way: tree <- parser, tree <- compare <- evaluate; all of them build on
:mod:`scim.paths` (attribute paths) and :mod:`scim.definitions`, and nothing here imports
the service, the API or storage. Callers import from this package.
"""

from scim.filter.evaluate import (
    INDEXABLE_ATTRIBUTES,
    element_matcher,
    equality_terms,
    matcher,
    matches,
    matches_element,
    validate,
    validate_element,
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
    "element_matcher",
    "equality_terms",
    "matcher",
    "matches",
    "matches_element",
    "parse_filter",
    "parse_value_filter",
    "top_level_paths",
    "validate",
    "validate_element",
]
