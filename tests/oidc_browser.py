"""Playing the user's browser at the test OpenID provider's login page, with requests.

:func:`sign_in` submits oidc-provider's devInteractions login form; :func:`abort_sign_in`
presses its Cancel link. Both stop at the redirect back to the relying party and return it
unrequested, so a test can deliver it (or tamper with it) itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit

import requests


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
