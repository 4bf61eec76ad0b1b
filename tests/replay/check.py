"""Checking a replayed answer: the recorded expectations, and the rules every answer obeys."""

from __future__ import annotations

import json
from collections.abc import Iterator

from tests.replay.exchange import ExchangeFormatError, select
from tests.replay.session import Played
from tests.replay.transport import Reply

SCIM_MEDIA_TYPE = "application/scim+json"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
# Keys whose value must be a JSON boolean wherever they appear in a response (Entra Q15).
_BOOLEAN_KEYS = {"active", "primary"}
RESOURCE_TYPES = ("User", "Group")
# An expected object {"$contains": [...]} matches a list holding those elements, among others.
CONTAINS = "$contains"
_NOTHING = object()


def problems(played: Played) -> list[str]:
    """Everything about the reply that differs from the recording; [] when it matches."""
    exchange, reply = played.exchange, played.reply
    found = list(played.errors)
    if reply is None:
        return found
    if reply.status != exchange.status:
        found.append(f"status: expected {exchange.status}, got {reply.status}")
    for name, value in played.expected_headers.items():
        actual = reply.headers.get(name.lower())
        if actual != value:
            found.append(f"header {name}: expected {value!r}, got {actual!r}")
    try:
        body = reply.json()
    except ValueError as exc:
        return [*found, f"response is not JSON: {exc}"]
    found += _invariants(reply, body)
    if exchange.has_response:
        found += mismatches(played.expected_response, body, "response")
    for pointer in exchange.response_absent:
        found += [f"{where}: should be absent" for where, _ in select(body, pointer, lenient=True)]
    for pointer in exchange.response_present:
        try:
            select(body, pointer)
        except KeyError as exc:
            found.append(f"{pointer}: should be present, but {exc.args[0]}")
    return found


def assert_played(played: Played) -> None:
    """Raise an AssertionError that names the file, the request and every difference."""
    found = problems(played)
    if not found:
        return
    exchange, reply = played.exchange, played.reply
    lines = [
        f"{exchange.id}: {exchange.description}",
        f"  file: {exchange.file}",
        f"  request: {played.request_line or '(not sent)'}",
        *(f"  - {problem}" for problem in found),
    ]
    if reply is not None:
        body = reply.body.decode("utf-8", "replace")
        lines.append(f"  got {reply.status}: {body[:2000]}")
    raise AssertionError("\n".join(lines))


def mismatches(expected: object, actual: object, where: str) -> list[str]:
    """Partial match: objects need the keys given, lists the same length, scalars equality;
    ``{"$contains": [...]}`` asks only that a list holds the elements given.

    Equality is JSON-typed: ``true`` is not ``"True"`` and ``1`` is not ``true`` (Entra Q15).
    """
    if isinstance(expected, dict) and list(expected) == [CONTAINS]:
        return _contains(expected[CONTAINS], actual, where)
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected an object, got {_show(actual)}"]
        found: list[str] = []
        for key, value in expected.items():
            child = f"{where}[{key!r}]" if ":" in key or "." in key else f"{where}.{key}"
            if key not in actual:
                found.append(f"{child}: missing (expected {_show(value)})")
            else:
                found += mismatches(value, actual[key], child)
        return found
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return [f"{where}: expected a list, got {_show(actual)}"]
        if len(expected) != len(actual):
            return [
                f"{where}: expected {len(expected)} elements, got {len(actual)}: {_show(actual)}"
            ]
        found = []
        for i, (want, got) in enumerate(zip(expected, actual, strict=True)):
            found += mismatches(want, got, f"{where}[{i}]")
        return found
    if not _same(expected, actual):
        return [f"{where}: expected {_show(expected)}, got {_show(actual)}"]
    return []


def _contains(expected: object, actual: object, where: str) -> list[str]:
    """``{"$contains": [...]}``: each given element matches a different element of the list."""
    if not isinstance(expected, list):
        raise ExchangeFormatError(f"{where}: $contains needs a list")
    if not isinstance(actual, list):
        return [f"{where}: expected a list, got {_show(actual)}"]
    remaining = list(actual)
    found = []
    for want in expected:
        match = next((got for got in remaining if not mismatches(want, got, where)), _NOTHING)
        if match is _NOTHING:
            found.append(f"{where}: no element matches {_show(want)}")
        else:
            remaining.remove(match)
    return found


def _same(expected: object, actual: object) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    return expected == actual


def _invariants(reply: Reply, body: object) -> list[str]:
    """What every answer must satisfy, whatever the exchange (A0, Q8, Q15, RFC 7644 §3.12)."""
    found = []
    if reply.body:
        media_type = reply.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != SCIM_MEDIA_TYPE:
            found.append(f"Content-Type: expected {SCIM_MEDIA_TYPE}, got {media_type!r} (Q8)")
    if reply.status == 204 and reply.body:
        found.append("a 204 must have an empty body")
    if reply.status >= 400 and isinstance(body, dict):
        if body.get("schemas") != [ERROR_SCHEMA] or body.get("status") != str(reply.status):
            found.append(f"error body: expected schemas [Error] and status {str(reply.status)!r}")
    for where, obj in _objects(body, "response"):
        for key, value in obj.items():
            if key.casefold() in _BOOLEAN_KEYS and not isinstance(value, bool):
                found.append(f"{where}.{key}: must be a JSON boolean, got {_show(value)} (Q15)")
            if value is None:
                found.append(f"{where}.{key}: null; leave the attribute out instead (A15, Q13)")
        meta = obj.get("meta")
        if isinstance(meta, dict) and meta.get("resourceType") in RESOURCE_TYPES:
            if "id" not in obj:
                found.append(f"{where}: a returned resource must carry id (A0)")
    return found


def _objects(value: object, where: str) -> Iterator[tuple[str, dict]]:
    """Every JSON object inside ``value`` with its path, depth first."""
    if isinstance(value, dict):
        yield where, value
        for key, item in value.items():
            yield from _objects(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _objects(item, f"{where}[{i}]")


def _show(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 300 else text[:300] + "..."
