"""SCIM PATCH (RFC 7644 §3.5.2) over a resource document, Entra's dialects included.

- :mod:`scim.patch.path`: PATCH paths, ``attrPath`` or ``valuePath`` with a sub-attribute;
- :mod:`scim.patch.operations`: addressing targets and walking the operations, atomically,
  on a copy (:func:`apply_patch`);
- :mod:`scim.patch.values`: the rules for the values written (merging, primary, seeding an
  element from a value filter);
- :mod:`scim.patch.members`: operations on a group's ``members``, turned into
  :class:`MemberChange` records, since storage keeps members as their own relation.

Builds on :mod:`scim.paths`, :mod:`scim.filter` and :mod:`scim.definitions`; knows nothing
of the service, the API or storage (beyond copying values). Callers import from here.
"""

from scim.patch.members import MemberChange
from scim.patch.operations import (
    OPS,
    Operation,
    PatchResult,
    apply_patch,
    blame_change,
    blame_operation,
)
from scim.patch.path import PatchPath, parse_patch_path

__all__ = [
    "OPS",
    "MemberChange",
    "Operation",
    "PatchPath",
    "PatchResult",
    "apply_patch",
    "blame_change",
    "blame_operation",
    "parse_patch_path",
]
