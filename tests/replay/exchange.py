"""The exchange file format: one recorded request and its expected answer per JSON file.

Described for authors in ``tests/exchanges/README.md``. A scenario is a directory whose files
run in name order; an unknown key is an error, so a misspelt key cannot silently check nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

EXCHANGES_DIR = Path(__file__).parents[1] / "exchanges"

_REQUIRED = {"description", "refs", "method", "path", "status"}
_OPTIONAL = {
    "headers",
    "request",
    "response",
    "response_absent",
    "response_present",
    "response_headers",
    "capture",
}
# Catalogue ids of entra-provisioning.md: A0-A20 (sub-entries like A5.4) and Q1-Q26; an
# Okta exchange (tests/exchanges-okta) names the part of Okta's documented behaviour it shows.
_REF = re.compile(r"^(A\d+(\.\d+)?|Q\d+|okta:[a-z][a-z-]*)$")


class ExchangeFormatError(ValueError):
    """An exchange file does not follow the format in tests/exchanges/README.md."""


@dataclass(frozen=True)
class Exchange:
    """One recorded request and the answer Entra needs, loaded from one JSON file."""

    scenario: str
    name: str
    index: int
    file: Path
    description: str
    refs: tuple[str, ...]
    method: str
    path: str
    status: int
    headers: Mapping[str, str | None] = field(default_factory=dict)
    request: object = None
    has_request: bool = False
    response: object = None
    has_response: bool = False
    response_absent: tuple[str, ...] = ()
    response_present: tuple[str, ...] = ()
    response_headers: Mapping[str, str] = field(default_factory=dict)
    capture: Mapping[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """``<scenario>/<file name without .json>``, the pytest id."""
        return f"{self.scenario}/{self.name}"


def load_exchange(path: Path, index: int = 0) -> Exchange:
    """Read and check one exchange file.

    :raises ExchangeFormatError: naming the file and the key at fault.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ExchangeFormatError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ExchangeFormatError(f"{path}: expected a JSON object")
    keys = set(data)
    if missing := _REQUIRED - keys:
        raise ExchangeFormatError(f"{path}: missing {', '.join(sorted(missing))}")
    if unknown := keys - _REQUIRED - _OPTIONAL:
        # A misspelt "respone" would silently check nothing.
        raise ExchangeFormatError(f"{path}: unknown keys {', '.join(sorted(unknown))}")
    refs = data["refs"]
    if not isinstance(refs, list) or not refs or not all(_REF.match(str(r)) for r in refs):
        raise ExchangeFormatError(
            f"{path}: refs must be a non-empty list like ['A6', 'Q2'] or ['okta:group-push']"
        )
    if not isinstance(data["status"], int):
        raise ExchangeFormatError(f"{path}: status must be an integer")
    for key in ("response_absent", "response_present"):
        if not all(isinstance(item, str) for item in data.get(key, [])):
            raise ExchangeFormatError(f"{path}: {key} must be a list of strings")
    for name, source in data.get("capture", {}).items():
        if not (source == "response" or source.startswith(("response/", "headers/"))):
            raise ExchangeFormatError(
                f"{path}: capture {name!r}: {source!r} is not 'response', 'response/<pointer>' "
                "or 'headers/<name>'"
            )
    return Exchange(
        scenario=path.parent.name,
        name=path.stem,
        index=index,
        file=path,
        description=data["description"],
        refs=tuple(refs),
        method=data["method"].upper(),
        path=data["path"],
        status=data["status"],
        headers=data.get("headers", {}),
        request=data.get("request"),
        has_request="request" in data,
        response=data.get("response"),
        has_response="response" in data,
        response_absent=tuple(data.get("response_absent", ())),
        response_present=tuple(data.get("response_present", ())),
        response_headers=data.get("response_headers", {}),
        capture=data.get("capture", {}),
    )


def load_scenarios(root: Path = EXCHANGES_DIR) -> dict[str, list[Exchange]]:
    """Every scenario under ``root``, by directory name, its exchanges in file-name order."""
    scenarios: dict[str, list[Exchange]] = {}
    for directory in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(directory.glob("*.json"))
        if files:
            scenarios[directory.name] = [load_exchange(f, i) for i, f in enumerate(files)]
    return scenarios


def select(document: object, pointer: str, *, lenient: bool = False) -> list[tuple[str, object]]:
    """Values at a JSON pointer (RFC 6901, "*" for every list element); a bare name is a
    top-level key. Missing keys raise KeyError unless ``lenient``.
    """
    if pointer in ("", "/"):
        return [("response", document)]
    parts = pointer[1:].split("/") if pointer.startswith("/") else [pointer]
    nodes: list[tuple[str, object]] = [("response", document)]
    for raw in parts:
        part = raw.replace("~1", "/").replace("~0", "~")
        next_nodes: list[tuple[str, object]] = []
        for where, node in nodes:
            if isinstance(node, list) and part == "*":
                next_nodes += [(f"{where}[{i}]", item) for i, item in enumerate(node)]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                next_nodes.append((f"{where}[{part}]", node[int(part)]))
            elif isinstance(node, dict) and part in node:
                next_nodes.append((f"{where}.{part}", node[part]))
            elif not lenient:
                raise KeyError(f"{where} has no {part!r}")
        nodes = next_nodes
    return nodes
