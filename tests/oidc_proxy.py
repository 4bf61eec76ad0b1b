"""The tampering proxy in front of the test OpenID provider (see :mod:`tests.oidc_support`).

It relays everything to the provider unchanged, unless a test asks it to misbehave: forge the
next ID Token (re-signed with the provider's own key, signed with a foreign one, or tampered
without re-signing), garble, fail or edit discovery (or any JSON answer), corrupt the next
token request's code, or go down. It remembers what each request carried. Pure standard library
plus joserfc for signing.
"""

from __future__ import annotations

import enum
import http.client
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from joserfc import jws, jwt
from joserfc.jwk import RSAKey

from tests.serverproc import HOST

DISCOVERY_PATH = "/.well-known/openid-configuration"
TOKEN_PATH = "/token"  # oidc-provider's default routes.token
JWKS_PATH = "/jwks"  # oidc-provider's default routes.jwks
# RFC 9110 §7.6.1: meaningful for one connection only, so a proxy does not pass them on.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}

Claims = dict[str, Any]
ClaimsEdit = Callable[[dict[str, Any], Claims], Claims]  # (JOSE header, claims) -> new claims


class Signature(enum.Enum):
    """How a forged ID Token is signed."""

    PROVIDER_KEY = "re-signed with the provider's own key: a valid signature"
    FOREIGN_KEY = "signed with another RSA key under the provider's kid: a bad signature"
    STALE = "the provider's original signature over the old payload: a bad signature"
    UNKNOWN_KEY = "signed with another RSA key under a new kid: as after a key rotation"


@dataclass(frozen=True)
class Exchange:
    """One request the proxy answered."""

    method: str
    path: str  # with its query string
    status: int
    headers: dict[str, str] = field(default_factory=dict)  # the request's, names lowercased
    body: bytes = b""  # the request's


@dataclass(frozen=True)
class _IdTokenForgery:
    edit: ClaimsEdit
    signature: Signature


@dataclass
class _Reply:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes


JsonEdit = Callable[[Any], Any]  # the provider's parsed JSON answer -> what is sent instead


@dataclass(frozen=True)
class _Canned:
    status: int
    body: bytes
    content_type: str


class TamperingProxy:
    """An HTTP proxy on 127.0.0.1 that relays to the provider and misbehaves on request.

    It passes methods, paths, headers (hop-by-hop ones excepted), bodies, statuses and
    ``Location`` through unchanged. Each connection carries one request (HTTP/1.0), so
    :meth:`go_down` cuts everyone off at once. A failure inside the proxy (say, an edit that
    raised) answers 502 with the reason and is kept in :attr:`errors`.
    """

    def __init__(self, signing_key: RSAKey) -> None:
        self.signing_key = signing_key
        self.upstream_port: int | None = None
        self.port: int | None = None
        self.exchanges: list[Exchange] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._canned: dict[str, _Canned] = {}
        self._edits: dict[str, JsonEdit] = {}
        self._forgery: _IdTokenForgery | None = None
        self._corrupt_code = False
        self._server: _ProxyServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the proxy has not listened yet")
        return f"http://{HOST}:{self.port}"

    def listen(self) -> None:
        """Start accepting connections (on a new port the first time, the same one after)."""
        if self._server is not None:
            return
        self._server = _ProxyServer((HOST, self.port or 0), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def go_down(self) -> None:
        """Stop listening: connections to the issuer are refused, as if the IdP were down."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        assert self._thread is not None
        self._thread.join(timeout=5)
        self._server = self._thread = None

    def come_back(self) -> None:
        """Listen again on the same port after :meth:`go_down`."""
        self.listen()

    def replace_response(
        self, path: str, status: int, body: bytes, content_type: str = "text/plain"
    ) -> None:
        """Answer every request for ``path`` (query ignored) with this, until restored."""
        with self._lock:
            self._canned[path] = _Canned(status, body, content_type)

    def edit_response(self, path: str, edit: JsonEdit) -> None:
        """Answer every request for ``path`` (query ignored) with the provider's JSON answer
        as ``edit`` changes it, until restored."""
        with self._lock:
            self._edits[path] = edit

    def restore_response(self, path: str | None = None) -> None:
        """Relay ``path`` (or every replaced or edited path) to the provider again."""
        with self._lock:
            if path is None:
                self._canned.clear()
                self._edits.clear()
            else:
                self._canned.pop(path, None)
                self._edits.pop(path, None)

    def garble_discovery(self) -> None:
        """Serve discovery as 200 ``application/json`` that is not JSON."""
        self.replace_response(DISCOVERY_PATH, 200, b'{"issuer": <not json', "application/json")

    def fail_discovery(self, status: int = 500) -> None:
        """Serve discovery as an HTTP error."""
        self.replace_response(DISCOVERY_PATH, status, b"Internal Server Error")

    def forge_next_id_token(
        self, edit: ClaimsEdit | None = None, signature: Signature = Signature.PROVIDER_KEY
    ) -> None:
        """Replace the ``id_token`` of the next token response that has one.

        :param edit: gets the token's JOSE header and claims, returns the new claims (e.g. a
            wrong ``aud``, ``iss`` or ``nonce``, or a past ``exp``); unchanged when None.
        :param signature: how the result is signed; with :attr:`Signature.STALE` the edit must
            change the claims (default: ``sub`` gets a suffix, an impersonation attempt).
        """
        if edit is None:
            edit = _impersonate if signature is Signature.STALE else _same_claims
        with self._lock:
            self._forgery = _IdTokenForgery(edit, signature)

    def corrupt_next_token_code(self) -> None:
        """Change the ``code`` of the next token request, so the provider refuses it.

        A replayed code needs no help: oidc-provider refuses a code used before
        (``invalid_grant``) and revokes what that code had issued.
        """
        with self._lock:
            self._corrupt_code = True

    def reset(self) -> None:
        """Behave again: relay everything unchanged, forge nothing, listen (for a shared proxy)."""
        with self._lock:
            self._canned.clear()
            self._edits.clear()
            self._forgery = None
            self._corrupt_code = False
            self.exchanges.clear()
            self.errors.clear()
        self.listen()

    def clear_exchanges(self) -> None:
        """Forget the requests seen so far."""
        with self._lock:
            self.exchanges.clear()

    def stop(self) -> None:
        """Close for good (as :meth:`go_down`; teardown's name for it)."""
        self.go_down()

    def relay(self, handler: _ProxyHandler) -> None:
        """Answer one request (called on the server's handler thread)."""
        headers = {name.lower(): value for name, value in handler.headers.items()}
        body = b""
        try:
            reply, body = self._relay(handler)
        except Exception as error:  # the test must see why, not a reset connection
            message = f"tampering proxy failed: {error!r}"
            with self._lock:
                self.errors.append(message)
            reply = _Reply(502, "Bad Gateway", [("Content-Type", "text/plain")], message.encode())
        with self._lock:  # before answering: a test that got its answer finds it here
            self.exchanges.append(
                Exchange(handler.command, handler.path, reply.status, headers, body)
            )
        _respond(handler, reply, head=handler.command == "HEAD")

    def _relay(self, handler: _ProxyHandler) -> tuple[_Reply, bytes]:
        """The answer, and the request's body as it arrived."""
        method, route = handler.command, urlsplit(handler.path).path
        body = received = _read_body(handler)
        with self._lock:
            canned = self._canned.get(route)
            edit = self._edits.get(route)
            corrupt_code = self._corrupt_code and method == "POST" and route == TOKEN_PATH
            if corrupt_code:
                self._corrupt_code = False
        if canned is not None:
            headers = [("Content-Type", canned.content_type)]
            return _Reply(canned.status, "", headers, canned.body), received or b""
        if corrupt_code:
            body = _corrupt_code(body)
        reply = self._forward(handler, body)
        if method == "POST" and route == TOKEN_PATH and reply.status == 200:
            reply.body = self._maybe_forge(reply.body, reply.headers)
        if edit is not None and reply.status == 200:
            if any(name.lower() == "content-encoding" for name, _ in reply.headers):
                raise RuntimeError(f"the answer for {route} is content-encoded; cannot edit it")
            reply.body = json.dumps(edit(json.loads(reply.body))).encode()
        return reply, received or b""

    def _forward(self, handler: _ProxyHandler, body: bytes | None) -> _Reply:
        if self.upstream_port is None:
            raise RuntimeError("the proxy has no provider to relay to")
        connection = http.client.HTTPConnection(HOST, self.upstream_port, timeout=30)
        try:
            # putrequest/putheader keep repeated headers and add none of their own.
            connection.putrequest(handler.command, handler.path, True, True)
            for name, value in handler.headers.items():
                if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                    connection.putheader(name, value)
            if body is not None:
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body)
            response = connection.getresponse()
            payload = response.read()
            return _Reply(response.status, response.reason, response.getheaders(), payload)
        except ConnectionRefusedError:
            # The provider is not up (yet, or any more): what a gateway says, not a proxy fault.
            text = b"tampering proxy: the provider refused the connection"
            return _Reply(502, "Bad Gateway", [("Content-Type", "text/plain")], text)
        finally:
            connection.close()

    def _maybe_forge(self, payload: bytes, headers: list[tuple[str, str]]) -> bytes:
        with self._lock:
            forgery = self._forgery
        if forgery is None:
            return payload
        if any(name.lower() == "content-encoding" for name, _ in headers):
            raise RuntimeError("the token response is content-encoded; cannot edit it")
        document = json.loads(payload)
        if "id_token" not in document:
            return payload  # keep the forgery for a response that has a token
        document["id_token"] = self._forge(document["id_token"], forgery)
        with self._lock:
            self._forgery = None
        return json.dumps(document).encode()

    def _forge(self, token: str, forgery: _IdTokenForgery) -> str:
        original = jws.extract_compact(token.encode())  # read only, not verified
        header = dict(original.headers())
        claims = json.loads(original.payload)
        edited = forgery.edit(dict(header), dict(claims))
        if forgery.signature is Signature.FOREIGN_KEY:
            foreign = RSAKey.generate_key(2048, parameters={"kid": header["kid"]}, private=True)
            return jwt.encode(header, edited, foreign, default_type=None)
        if forgery.signature is Signature.UNKNOWN_KEY:
            rotated = {**header, "kid": f"{header.get('kid')}-rotated"}
            foreign = RSAKey.generate_key(2048, parameters={"kid": rotated["kid"]}, private=True)
            return jwt.encode(rotated, edited, foreign, default_type=None)
        forged = jwt.encode(header, edited, self.signing_key, default_type=None)
        if forgery.signature is Signature.PROVIDER_KEY:
            return forged
        if edited == claims:
            raise ValueError("Signature.STALE needs an edit that changes the claims")
        # The new header and payload, under the signature the provider made for the old ones.
        return forged.rsplit(".", 1)[0] + "." + token.rsplit(".", 1)[1]


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client must not hold up go_down()

    def __init__(self, address: tuple[str, int], proxy: TamperingProxy) -> None:
        self.proxy = proxy
        super().__init__(address, _ProxyHandler)


class _ProxyHandler(BaseHTTPRequestHandler):
    server: _ProxyServer
    protocol_version = "HTTP/1.0"  # one request per connection; see TamperingProxy

    def _relay(self) -> None:
        self.server.proxy.relay(self)

    do_GET = do_POST = do_HEAD = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _relay

    def log_message(self, format: str, *args: Any) -> None:
        pass  # TamperingProxy.exchanges is the log; stderr would only clutter pytest's output


def _read_body(handler: BaseHTTPRequestHandler) -> bytes | None:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while size := int(handler.rfile.readline().split(b";")[0], 16):
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()  # the CRLF after each chunk
        while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass  # trailers
        return b"".join(chunks)
    length = handler.headers.get("Content-Length")
    return handler.rfile.read(int(length)) if length is not None else None


def _respond(handler: BaseHTTPRequestHandler, reply: _Reply, head: bool) -> None:
    # send_response_only: no Server or Date of the proxy's own next to the provider's.
    handler.send_response_only(reply.status, reply.reason or None)
    for name, value in reply.headers:
        lowered = name.lower()
        # A HEAD answer keeps the provider's Content-Length (of the body it did not send).
        if lowered in HOP_BY_HOP or (lowered == "content-length" and not head):
            continue
        handler.send_header(name, value)
    if not head:
        handler.send_header("Content-Length", str(len(reply.body)))
    handler.send_header("Connection", "close")
    handler.end_headers()
    if not head:
        handler.wfile.write(reply.body)


def _corrupt_code(body: bytes | None) -> bytes | None:
    if body is None:
        return None
    fields = parse_qsl(body.decode("ascii"), keep_blank_values=True)
    return urlencode([(k, v + "x" if k == "code" else v) for k, v in fields]).encode("ascii")


def _same_claims(header: dict[str, Any], claims: Claims) -> Claims:
    return claims


def _impersonate(header: dict[str, Any], claims: Claims) -> Claims:
    return {**claims, "sub": f"{claims.get('sub')}-impersonated"}
