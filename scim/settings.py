"""``[scim]``: what the SCIM API takes from the configuration (read by :mod:`server.config`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScimSettings:
    """``[scim]``: protocol limits."""

    prefix: str = "/scim/v2"
    max_results: int = 1000
    max_filter_length: int = 4096
