"""Replaying a scenario: placeholders, captures, and what each exchange expects."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from tests.replay.exchange import Exchange, select
from tests.replay.transport import Reply, Transport

# Entra's request headers (entra-provisioning.md A0, Q8): a bearer token always, and the SCIM
# media type with a charset on requests that carry a body. GETs carry no Content-Type.
DEFAULT_HEADERS = {"Authorization": "Bearer {token}"}
BODY_HEADERS = {"Content-Type": "application/scim+json; charset=utf-8"}
# {name} or {name.path.to.value}: an identifier, then dotted keys or list indexes. A JSON text
# inside a string value ('{"id": ...}', Entra Q16) never matches: it starts with a quote.
_PLACEHOLDER = re.compile(r"\{([A-Za-z_]\w*(?:\.[\w$-]+)*)\}")


class UnresolvedPlaceholder(LookupError):
    """A ``{name.path}`` names nothing captured so far."""


def render(value: object, variables: Mapping[str, object]) -> object:
    """``value`` with every ``{name.path}`` replaced from ``variables``, recursively.

    A string that is exactly one placeholder takes the captured value with its JSON type.
    """
    if isinstance(value, str):
        whole = _PLACEHOLDER.fullmatch(value)
        if whole:
            return _lookup(whole.group(1), variables)
        return _PLACEHOLDER.sub(lambda m: str(_lookup(m.group(1), variables)), value)
    if isinstance(value, list):
        return [render(item, variables) for item in value]
    if isinstance(value, dict):
        return {render(k, variables): render(v, variables) for k, v in value.items()}
    return value


def _lookup(name: str, variables: Mapping[str, object]) -> object:
    head, *rest = name.split(".")
    if head not in variables:
        raise UnresolvedPlaceholder(
            f"{{{name}}}: nothing was captured as {head!r} (did an earlier exchange fail?)"
        )
    value = variables[head]
    for key in rest:
        if isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        elif isinstance(value, dict) and key in value:
            value = value[key]
        else:
            raise UnresolvedPlaceholder(f"{{{name}}}: {head} has no {key!r}")
    return value


@dataclass
class Played:
    """One exchange as replayed: the reply, and the expectations rendered at that moment."""

    exchange: Exchange
    request_line: str = ""
    reply: Reply | None = None
    expected_response: object = None
    expected_headers: Mapping[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class Replay:
    """One run of a scenario: the values captured so far and the transport it talks through."""

    def __init__(self, transport: Transport, token: str) -> None:
        self.transport = transport
        self.variables: dict[str, object] = {"base": transport.base_url, "token": token}

    def run(self, exchanges: list[Exchange]) -> Iterator[Played]:
        """Play each exchange in order (a generator: stop early by not iterating)."""
        for exchange in exchanges:
            yield self.play(exchange)

    def play(self, exchange: Exchange) -> Played:
        """Send one exchange, capture what it names, render what it expects."""
        played = Played(exchange)
        try:
            path = str(render(exchange.path, self.variables))
            headers, body = self._request(exchange)
        except UnresolvedPlaceholder as exc:
            played.errors.append(f"request not sent: {exc}")
            return played
        played.request_line = f"{exchange.method} {path}"
        reply = self.transport.send(exchange.method, path, headers, body)
        played.reply = reply
        self._capture(exchange, reply, played)
        try:
            played.expected_response = render(exchange.response, self.variables)
            played.expected_headers = {
                name: str(render(value, self.variables))
                for name, value in exchange.response_headers.items()
            }
        except UnresolvedPlaceholder as exc:
            played.errors.append(f"expectation not rendered: {exc}")
        return played

    def _request(self, exchange: Exchange) -> tuple[dict[str, str], bytes | None]:
        body: bytes | None = None
        merged: dict[str, str | None] = dict(DEFAULT_HEADERS)
        if exchange.has_request:
            request = render(exchange.request, self.variables)
            # A string body is sent verbatim (malformed JSON, odd encodings); anything else
            # as JSON, non-ASCII kept as UTF-8 like Entra's client.
            text = request if isinstance(request, str) else json.dumps(request, ensure_ascii=False)
            body = text.encode("utf-8")
            merged.update(BODY_HEADERS)
        merged.update(exchange.headers)  # null removes a default header
        headers = {
            name: str(render(value, self.variables))
            for name, value in merged.items()
            if value is not None
        }
        return headers, body

    def _capture(self, exchange: Exchange, reply: Reply, played: Played) -> None:
        """``"capture": {"user": "response"}`` keeps the body (or a part) as ``{user...}``."""
        for name, source in exchange.capture.items():
            where, _, pointer = source.partition("/")
            try:
                if where == "response":
                    found = [value for _, value in select(_json_or_fail(reply), "/" + pointer)]
                else:
                    found = [reply.headers[pointer.lower()]]
            except (KeyError, ValueError) as exc:
                played.errors.append(f"capture {name!r} from {source!r} failed: {exc}")
                continue
            if len(found) != 1:
                played.errors.append(f"capture {name!r}: {source!r} matched {len(found)} values")
                continue
            self.variables[name] = found[0]


def _json_or_fail(reply: Reply) -> object:
    body = reply.json()
    if body is None:
        raise ValueError(f"the {reply.status} reply has no body")
    return body
