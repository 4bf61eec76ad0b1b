"""A real OpenID provider for the single sign-on tests, with a tampering proxy in front of it.

:class:`OidcProvider` runs panva's oidc-provider (``tests/oidc_provider/provider.mjs``, the
certified Node.js implementation) on 127.0.0.1 with one confidential client, a fresh RSA signing
key and the accounts a test names. Its issuer URL is a :class:`TamperingProxy`, so everything the
relying party and the browser send (discovery, JWKS, authorization, token) passes through Python,
where a test can forge the next ID Token, garble discovery, corrupt the code, or take the
provider down. :func:`sign_in` and :func:`abort_sign_in` play the user's browser with requests.

Without ``node`` or ``tests/oidc_provider/node_modules`` (``npm ci --prefix tests/oidc_provider``)
the tests skip locally and fail in CI (``CI`` set), like the browser tests.
"""

from __future__ import annotations

import enum
import http.client
import json
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urljoin, urlsplit

import pytest
import requests
from joserfc import jws, jwt
from joserfc.jwk import RSAKey

from tests.external import missing
from tests.serverproc import HOST, free_port, wait_for_http

PROVIDER_DIR = Path(__file__).resolve().parent / "oidc_provider"
PROVIDER_SCRIPT = PROVIDER_DIR / "provider.mjs"
DISCOVERY_PATH = "/.well-known/openid-configuration"
TOKEN_PATH = "/token"  # oidc-provider's default routes.token
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


def missing_requirement() -> str | None:
    """Why the provider cannot run here (no node, modules not installed), or None."""
    if shutil.which("node") is None:
        return "node is not installed (apt-get install nodejs npm)"
    if not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        return "oidc-provider is not installed (npm ci --prefix tests/oidc_provider)"
    return None


def require_provider() -> None:
    """Skip the test when the provider cannot run; fail instead in CI, where it must."""
    why = missing_requirement()
    if why is not None:
        missing(why)


class Signature(enum.Enum):
    """How a forged ID Token is signed."""

    PROVIDER_KEY = "re-signed with the provider's own key: a valid signature"
    FOREIGN_KEY = "signed with another RSA key under the provider's kid: a bad signature"
    STALE = "the provider's original signature over the old payload: a bad signature"


@dataclass(frozen=True)
class Exchange:
    """One request the proxy answered."""

    method: str
    path: str  # with its query string
    status: int


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

    def restore_response(self, path: str | None = None) -> None:
        """Relay ``path`` (or every replaced path) to the provider again."""
        with self._lock:
            if path is None:
                self._canned.clear()
            else:
                self._canned.pop(path, None)

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
        try:
            reply = self._relay(handler)
        except Exception as error:  # the test must see why, not a reset connection
            message = f"tampering proxy failed: {error!r}"
            with self._lock:
                self.errors.append(message)
            reply = _Reply(502, "Bad Gateway", [("Content-Type", "text/plain")], message.encode())
        with self._lock:  # before answering: a test that got its answer finds it here
            self.exchanges.append(Exchange(handler.command, handler.path, reply.status))
        _respond(handler, reply, head=handler.command == "HEAD")

    def _relay(self, handler: _ProxyHandler) -> _Reply:
        method, route = handler.command, urlsplit(handler.path).path
        body = _read_body(handler)
        with self._lock:
            canned = self._canned.get(route)
            corrupt_code = self._corrupt_code and method == "POST" and route == TOKEN_PATH
            if corrupt_code:
                self._corrupt_code = False
        if canned is not None:
            return _Reply(canned.status, "", [("Content-Type", canned.content_type)], canned.body)
        if corrupt_code:
            body = _corrupt_code(body)
        reply = self._forward(handler, body)
        if method == "POST" and route == TOKEN_PATH and reply.status == 200:
            reply.body = self._maybe_forge(reply.body, reply.headers)
        return reply

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


class OidcProvider:
    """oidc-provider as a node subprocess with its own config and log under ``workdir``.

    :param client_id: the one client registered (a random ``client_secret`` comes with it).
    :param token_endpoint_auth_method: e.g. ``client_secret_basic`` or ``client_secret_post``.
    """

    def __init__(
        self,
        workdir: Path,
        client_id: str = "proware",
        token_endpoint_auth_method: str = "client_secret_basic",
    ) -> None:
        self.workdir = workdir
        self.client_id = client_id
        self.client_secret = secrets.token_urlsafe(32)
        self.token_endpoint_auth_method = token_endpoint_auth_method
        kid = f"test-{secrets.token_hex(4)}"
        self.signing_key = RSAKey.generate_key(
            2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"}, private=True
        )
        self.proxy = TamperingProxy(self.signing_key)
        self.port: int | None = None  # the provider's own port, behind the proxy
        self.process: subprocess.Popen | None = None

    @property
    def issuer(self) -> str:
        """The issuer URL, which is the proxy's."""
        return self.proxy.url

    @property
    def metadata_url(self) -> str:
        return self.issuer + DISCOVERY_PATH

    @property
    def config_path(self) -> Path:
        return self.workdir / "provider.json"

    @property
    def log_path(self) -> Path:
        return self.workdir / "provider.log"

    def start(
        self,
        redirect_uris: Sequence[str],
        accounts: Mapping[str, Mapping[str, Any]] | None = None,
        timeout: float = 20.0,
    ) -> float:
        """Write the config, start the proxy and ``node provider.mjs``, wait for discovery.

        :param redirect_uris: the relying party's redirect URIs (http on 127.0.0.1 is fine).
        :param accounts: login name -> claims (``sub``, ``preferred_username``, ``email``,
            ``name``...); any other login signs in as ``{sub: login, preferred_username: login}``.
        :returns: seconds until discovery answered 200 through the proxy.
        :raises tests.serverproc.ServerFailed: if node exits or does not answer in time; the
            message ends with its log.
        """
        if self.process is not None:
            raise RuntimeError("the provider is already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proxy.listen()  # first: its port is bound, so free_port() cannot hand it out
        proxy_port = self.proxy.port
        assert proxy_port is not None
        self.port = self.proxy.upstream_port = free_port()
        client = {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "redirect_uris": list(redirect_uris),
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
            "token_endpoint_auth_method": self.token_endpoint_auth_method,
        }
        config = {
            "issuer": self.issuer,
            "port": self.port,
            "jwks": {"keys": [self.signing_key.as_dict(private=True)]},
            "clients": [client],
            "accounts": {login: dict(claims) for login, claims in (accounts or {}).items()},
        }
        self.config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        started = time.perf_counter()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                ["node", str(PROVIDER_SCRIPT), str(self.config_path)],
                cwd=PROVIDER_DIR,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal is pytest's, not node's
            )
        try:
            wait_for_http(proxy_port, DISCOVERY_PATH, self.process, timeout, self.log_path)
        except Exception:
            self.stop()
            raise
        seconds = time.perf_counter() - started
        self.proxy.clear_exchanges()  # the polling above is not the test's traffic
        return seconds

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM the provider (SIGKILL after ``timeout``) and close the proxy.

        :returns: node's exit code, or None if it had to be killed or never ran.
        """
        code = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
            try:
                code = self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
            self.process = None
        self.proxy.stop()
        return code

    def log_tail(self, lines: int = 20) -> str:
        """The end of node's output (oidc-provider's errors are logged there), for messages."""
        if not self.log_path.exists():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> OidcProvider:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@pytest.fixture
def oidc_provider_factory(tmp_path: Path) -> Iterator[Callable[..., OidcProvider]]:
    """``start(redirect_uris, accounts=None, **options)`` -> a running :class:`OidcProvider`.

    Skips (fails in CI) without node or the node modules; stops every provider it started.
    """
    require_provider()
    started: list[OidcProvider] = []

    def start(
        redirect_uris: Sequence[str],
        accounts: Mapping[str, Mapping[str, Any]] | None = None,
        **options: Any,
    ) -> OidcProvider:
        provider = OidcProvider(tmp_path / f"oidc-provider-{len(started)}", **options)
        started.append(provider)
        provider.start(redirect_uris, accounts)
        return provider

    yield start
    for provider in reversed(started):
        provider.stop()


class ProviderPageError(AssertionError):
    """The provider showed a page the user could not go on from (an error, an unknown form)."""


def sign_in(
    authorization_url: str,
    login: str,
    password: str = "any password",
    redirect_uri: str | None = None,
    session: requests.Session | None = None,
) -> str:
    """Play the browser from the relying party's authorization redirect to its callback.

    Follows the provider's redirects and submits its sign-in form as ``login`` (any password
    passes), then returns the URL the provider sent the browser back to (``code``, ``state``,
    ``iss``; or ``error``) without requesting it.

    :param redirect_uri: where to stop; by default the ``redirect_uri`` of the request.
    :param session: reuse one to keep the provider's session cookie (a second sign-in is then
        silent, and ``login`` unused).
    :raises ProviderPageError: on an error page, or if the provider never redirects back.
    """

    def submit_login(page: _Page, url: str) -> tuple[str, str, dict[str, str]]:
        form = page.login_form()
        if form is None:
            raise ProviderPageError(f"expected the sign-in form at {url}:\n{page.text()}")
        fields = {**form.fields, "login": login, "password": password}
        return form.method, urljoin(url, form.action), fields

    return _walk(authorization_url, redirect_uri, session, submit_login)


def abort_sign_in(
    authorization_url: str,
    redirect_uri: str | None = None,
    session: requests.Session | None = None,
) -> str:
    """Like :func:`sign_in`, but press the sign-in page's ``[ Cancel ]`` link.

    :returns: the redirect back to the relying party, with ``error=access_denied``.
    """

    def press_cancel(page: _Page, url: str) -> tuple[str, str, dict[str, str]]:
        href = page.abort_link()
        if href is None:
            raise ProviderPageError(f"expected a sign-in page to cancel at {url}:\n{page.text()}")
        return "get", urljoin(url, href), {}

    return _walk(authorization_url, redirect_uri, session, press_cancel)


PageAction = Callable[["_Page", str], tuple[str, str, dict[str, str]]]


def _walk(
    url: str, redirect_uri: str | None, session: requests.Session | None, on_page: PageAction
) -> str:
    if redirect_uri is None:
        redirect_uri = parse_qs(urlsplit(url).query)["redirect_uri"][0]
    browser = session
    if browser is None:
        browser = requests.Session()
        browser.trust_env = False  # 127.0.0.1 only: no HTTP(S)_PROXY from the environment
    method, data, pages = "get", None, 0
    for _ in range(20):  # a sign-in is ~4 hops; more means a loop
        response = browser.request(method, url, data=data, allow_redirects=False, timeout=10)
        if response.is_redirect:
            url = urljoin(url, response.headers["Location"])
            if _same_endpoint(url, redirect_uri):
                return url
            method, data = "get", None
            continue
        page = _Page.parse(response.text)
        if response.status_code != 200 or pages:
            raise ProviderPageError(f"{response.status_code} at {url}:\n{page.text()}")
        pages += 1  # one page to act on: a second would be a consent screen or a loop
        method, url, data = on_page(page, url)
    raise ProviderPageError(f"no redirect to {redirect_uri} after 20 requests")


def _same_endpoint(url: str, redirect_uri: str) -> bool:
    ours, theirs = urlsplit(url), urlsplit(redirect_uri)
    return (ours.scheme, ours.netloc, ours.path) == (theirs.scheme, theirs.netloc, theirs.path)


@dataclass
class _Form:
    action: str
    method: str
    fields: dict[str, str]


class _Page(HTMLParser):
    """The forms, links and text of one HTML page (devInteractions pages are small)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[_Form] = []
        self.links: list[str] = []
        self.chunks: list[str] = []
        self._in_style = False

    @classmethod
    def parse(cls, html: str) -> _Page:
        page = cls()
        page.feed(html)
        page.close()
        return page

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            method = values.get("method", "get").lower()
            self.forms.append(_Form(values.get("action", ""), method, {}))
        elif tag == "input" and self.forms and "name" in values:
            self.forms[-1].fields[values["name"]] = values.get("value", "")
        elif tag == "a" and "href" in values:
            self.links.append(values["href"])
        self._in_style = tag in ("style", "script")

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if data.strip() and not self._in_style:
            self.chunks.append(data.strip())

    def login_form(self) -> _Form | None:
        """devInteractions' form: ``prompt=login``, ``login`` and ``password`` fields."""
        for form in self.forms:
            if form.fields.get("prompt") == "login" and "login" in form.fields:
                return form
        return None

    def abort_link(self) -> str | None:
        """devInteractions' ``[ Cancel ]`` link, ``/interaction/<uid>/abort``."""
        return next((href for href in self.links if href.endswith("/abort")), None)

    def text(self) -> str:
        """The visible text, in short (error pages say what went wrong there)."""
        return "\n".join(self.chunks)[:1500]
