"""A real OpenID provider for the single sign-on tests, with a tampering proxy in front of it.

:class:`OidcProvider` runs panva's oidc-provider (``tests/oidc_provider/provider.mjs``, the
certified Node.js implementation) on 127.0.0.1 with one confidential client, a fresh RSA signing
key and the accounts a test names. Its issuer URL is a :class:`tests.oidc_proxy.TamperingProxy`,
so everything the relying party and the browser send (discovery, JWKS, authorization, token)
passes through Python, where a test can forge the next ID Token, garble discovery, corrupt the
code, or take the provider down. :mod:`tests.oidc_browser` plays the user's browser.

Without ``node`` or ``tests/oidc_provider/node_modules`` (``npm ci --prefix tests/oidc_provider``)
the tests skip locally and fail in CI (``CI`` set), like the browser tests.
"""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from joserfc.jwk import RSAKey

from tests.external import missing
from tests.oidc_proxy import DISCOVERY_PATH, TamperingProxy
from tests.serverproc import free_port, wait_for_http

PROVIDER_DIR = Path(__file__).resolve().parent / "oidc_provider"
PROVIDER_SCRIPT = PROVIDER_DIR / "provider.mjs"


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
