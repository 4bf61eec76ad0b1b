"""``[storage]``: where the store keeps its data (read by :mod:`server.config`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StorageSettings:
    """``[storage]``: the data directory (one server process per directory)."""

    path: Path = Path("data")
