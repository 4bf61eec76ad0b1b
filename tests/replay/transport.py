"""Two ways to send an exchange: the Flask test client, or http.client over a real socket."""

from __future__ import annotations

import http.client
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

from flask.testing import FlaskClient

PREFIX = "/scim/v2"
# Characters left as written when a path goes on the wire: the URL delimiters, and "%" so
# that a path already percent-encoded by the file (Entra's "+" and "%22") stays as it is.
_URL_SAFE = "/?&=+%:,;@!$'()*[]~-._"


@dataclass(frozen=True)
class Reply:
    """What came back: status, headers (names lower-cased) and the raw body."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> object:
        """The body parsed as JSON; None for an empty body."""
        if not self.body:
            return None
        return json.loads(self.body.decode("utf-8"))


class Transport(Protocol):
    """Sends one request to the SCIM service; ``base_url`` is the Tenant URL it answers on."""

    base_url: str

    def send(self, method: str, path: str, headers: dict[str, str], body: bytes | None) -> Reply:
        """Send ``method path`` (path relative to the Tenant URL) and read the whole reply."""
        ...


def wire_path(path: str) -> str:
    """``path`` as it goes on the wire: spaces and quotes percent-encoded, "%XX" kept."""
    return quote(path, safe=_URL_SAFE)


class FlaskTransport:
    """Requests through the Flask test client (no sockets)."""

    def __init__(self, client: FlaskClient, prefix: str = PREFIX) -> None:
        self.client = client
        self.prefix = prefix
        self.base_url = f"http://localhost{prefix}"

    def send(self, method: str, path: str, headers: dict[str, str], body: bytes | None) -> Reply:
        response = self.client.open(
            self.prefix + wire_path(path), method=method, headers=headers, data=body
        )
        return Reply(
            response.status_code,
            {name.lower(): value for name, value in response.headers.items()},
            response.get_data(),
        )


class HttpTransport:
    """Requests over one keep-alive HTTP/1.1 connection with http.client, as Entra sends them.

    ``connections`` counts the TCP connections opened, so a test can check that the server
    kept the connection alive.
    """

    def __init__(self, host: str, port: int, prefix: str = PREFIX, timeout: float = 10) -> None:
        self.connection = http.client.HTTPConnection(host, port, timeout=timeout)
        self.prefix = prefix
        self.base_url = f"http://{host}:{port}{prefix}"
        self.connections = 0

    def send(self, method: str, path: str, headers: dict[str, str], body: bytes | None) -> Reply:
        if self.connection.sock is None:
            self.connections += 1
        self.connection.request(method, self.prefix + wire_path(path), body=body, headers=headers)
        response = self.connection.getresponse()
        data = response.read()
        return Reply(
            response.status, {name.lower(): value for name, value in response.getheaders()}, data
        )

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()
