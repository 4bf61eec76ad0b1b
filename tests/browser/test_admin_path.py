"""The admin's whole path through the control panel, in headless Chromium against the real server.

``python app.py serve`` runs as a subprocess on a free port with its own config and data
(tests/serverproc.py); Playwright drives Debian's ``chromium`` (launched by path: browsers are
not downloaded at test time). Entra's side is played with ``http.client``, as Entra's
provisioning service would call the Tenant URL.

Without Chromium the tests skip locally, and fail in CI (``CI`` set), where .ci/run installs it.
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.browser.conftest import base_url, new_page
from tests.serverproc import APP, REPO, ServerProcess

pytestmark = pytest.mark.browser

PASSWORD = "a long and unguessable passphrase"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """The real service, started fresh (no admin yet)."""
    process = ServerProcess(tmp_path / "server")
    process.start()
    try:
        yield process
    finally:
        process.stop(timeout=10)


def setup_link(server: ServerProcess) -> str:
    """The one-time link that ``serve`` printed."""
    found = re.search(r"http://\S+/admin/setup/\S+", server.log_path.read_text())
    assert found, server.log_tail()
    return found.group(0)


def preview(url: str) -> tuple[int, http.client.HTTPMessage]:
    """What a chat app's link preview does: a GET without cookies, as a bot."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request("GET", parts.path, headers={"User-Agent": "Slackbot-LinkExpanding 1.0"})
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    return response.status, response.headers


def create_admin(server: ServerProcess, username: str) -> None:
    """``python app.py admin create USERNAME``, the password on stdin."""
    subprocess.run(
        [
            sys.executable,
            str(APP),
            "--config",
            str(server.config_path),
            "admin",
            "create",
            username,
        ],
        cwd=REPO,
        input=PASSWORD + "\n",
        text=True,
        check=True,
        capture_output=True,
        timeout=60,
    )


def entra_request(
    tenant_url: str, token: str, method: str, path: str, body: dict | None = None
) -> tuple[int, dict | None]:
    """One request as Entra's provisioning service sends it to the Tenant URL."""
    parts = urlsplit(tenant_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    headers = {"Authorization": f"Bearer {token}"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/scim+json; charset=utf-8"
    try:
        connection.request(method, parts.path + path, body=data, headers=headers)
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    return response.status, json.loads(raw) if raw else None


def copied(page, button: str, field: str) -> str:
    """Press a Copy button and return what reached the clipboard."""
    page.get_by_role("button", name=button).click()
    page.locator(f"#{field}-status").filter(has_text="Copied").wait_for()
    return page.evaluate("navigator.clipboard.readText()")


def test_the_admins_whole_path(chromium, server: ServerProcess, tmp_path: Path) -> None:
    """Setup link -> sign in -> enable -> token -> Test Connection -> activity -> revoke -> out."""
    context, page = new_page(chromium, server)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base_url(server))

    # First-run setup: the link printed on the console, pasted into a chat whose preview
    # opens it first (no cookies, a bot's User-Agent); the first admin chooses a password.
    link = setup_link(server)
    status, headers = preview(link)
    assert status == 200
    assert headers["Referrer-Policy"] == "no-referrer" and headers["Cache-Control"] == "no-store"
    page.goto(link)
    assert page.url == link  # the form at the link itself: nothing spent by the preview
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat the password").fill(PASSWORD)
    page.get_by_role("button", name="Create admin account").click()
    page.get_by_text("Admin account 'admin' created").wait_for()

    # The link is spent: opening it again says so, and leads to sign-in.
    again = context.new_page()
    again.goto(link)
    again.get_by_role("heading", name="This setup link has been used").wait_for()
    again.get_by_role("link", name="Go to sign-in").click()
    again.wait_for_url("**/admin/sign-in")
    again.close()
    # The access log wrote the link's secret nowhere (the console's printed line aside).
    secret = link.rpartition("/")[2]
    assert server.log_path.read_text().count(secret) == 1
    assert '"POST /admin/setup/[redacted]" 302' in server.log_path.read_text()

    # Sign in, then Control panel > Admin > Control panel settings.
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Control panel", exact=True).wait_for()
    page.get_by_role("link", name="Control panel settings").first.click()
    page.get_by_role("heading", name="Control panel settings").wait_for()
    crumbs = page.get_by_role("navigation", name="Breadcrumb").locator("li").all_inner_texts()
    assert crumbs == ["Control panel", "Admin", "Control panel settings"]

    # User Provisioning: enable it.
    section = page.locator("#user-provisioning")
    section.scroll_into_view_if_needed()
    assert section.get_by_role("heading", name="User Provisioning").is_visible()
    page.get_by_role("button", name="Enable User Provisioning").click()
    assert page.locator("#provisioning-state").inner_text() == "Enabled"

    # Create bearer token: shown once, with a Copy button.
    page.get_by_label("Name", exact=True).fill("entra")
    page.get_by_role("button", name="Create bearer token").click()
    assert "shown only this once" in page.locator("#new-token-box").inner_text()
    token = copied(page, "Copy Token", "new-token")
    assert token == page.locator("#new-token").input_value()
    assert re.fullmatch(r"pw_[A-Za-z0-9_-]{43}", token)
    tenant_url = copied(page, "Copy Tenant URL", "tenant-url-value")
    assert tenant_url == f"{base_url(server)}/scim/v2"
    page.screenshot(path=str(tmp_path / "settings-new-token.png"), full_page=True)

    # The token is not on the page any more once it is left.
    page.reload()
    assert token not in page.content()

    # Entra's Test Connection: a userName query for a fresh GUID that matches nothing.
    status, body = entra_request(
        tenant_url, token, "GET", f"/Users?filter=userName+eq+%22{uuid.uuid4()}%22"
    )
    assert status == 200 and body is not None and body["totalResults"] == 0
    page.reload()
    entra = page.locator(".connection[data-token='entra']")
    probe = entra.locator(".test-connection").inner_text()
    assert "Test Connection probe: no match, as Entra expects" in probe
    assert "127.0.0.1" in probe

    # A provisioning request shows up in Provisioning activity.
    status, created = entra_request(
        tenant_url,
        token,
        "POST",
        "/Users",
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "ann@contoso.example",
            "active": True,
        },
    )
    assert status == 201 and created is not None
    page.get_by_role("link", name="Provisioning activity").click()
    page.get_by_role("heading", name="Provisioning activity").wait_for()
    first_row = page.locator("table.events tbody tr").first
    assert "create" in first_row.inner_text()
    assert "ann@contoso.example" in first_row.inner_text()
    assert "entra" in first_row.inner_text()
    users = page.locator("dl.summary div", has_text="Users").first.locator("dd").inner_text()
    assert users == "1"
    page.screenshot(path=str(tmp_path / "activity.png"), full_page=True)

    # ... and in the Directory, read-only.
    first_row.get_by_role("link", name="ann@contoso.example").click()
    page.get_by_role("heading", name="ann@contoso.example").wait_for()
    assert "source of truth" in page.locator("#source-of-truth").inner_text()
    page.screenshot(path=str(tmp_path / "user.png"), full_page=True)

    # Revoke, with a confirmation step; the token then gets 401 and the refusal says why.
    page.get_by_role("link", name="Control panel settings").first.click()
    page.get_by_role("link", name="Revoke token entra").click()
    page.get_by_role("heading", name="Revoke token “entra”?").wait_for()
    page.get_by_role("button", name="Revoke token").click()
    page.get_by_text("Token 'entra' revoked").wait_for()
    status, body = entra_request(tenant_url, token, "GET", "/Users")
    assert status == 401 and body is not None and "revoked" in body["detail"]
    page.reload()
    refusals = page.locator(".connection[data-token='entra'] table.refusals").inner_text()
    assert "Revoked token" in refusals
    assert "Create a new bearer token" in refusals
    page.screenshot(path=str(tmp_path / "settings-after-revoke.png"), full_page=True)

    # Sign out: the session is over.
    page.get_by_role("button", name="Sign out").click()
    page.get_by_text("You have signed out.").wait_for()
    page.goto("/admin/settings")
    assert urlsplit(page.url).path == "/admin/sign-in"
    context.close()


def test_a_form_posted_without_its_csrf_token_is_refused(chromium, server: ServerProcess) -> None:
    create_admin(server, "admin")
    context, page = new_page(chromium, server)
    page.goto("/admin/sign-in")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.goto("/admin/settings")
    # The same form, minus its hidden token (what a forged cross-site form would send).
    page.locator("#provisioning-switch input[name=csrf_token]").evaluate("field => field.remove()")
    page.get_by_role("button", name="Enable User Provisioning").click()
    # The click returns once the answer's page is committed, maybe not yet parsed: wait for
    # the heading (is_visible() would look once, at once).
    page.get_by_role("heading", name="Bad request").wait_for()
    assert "nothing was changed" in page.content()
    page.goto("/admin/settings")
    assert page.locator("#provisioning-state").inner_text() == "Disabled"
    context.close()


def test_repeated_failed_sign_ins_lock_the_account(chromium, server: ServerProcess) -> None:
    create_admin(server, "bob")
    context, page = new_page(chromium, server)
    page.goto("/admin/sign-in")
    for attempt in range(5):
        page.get_by_label("Username").fill("bob")
        page.get_by_label("Password").fill(f"wrong guess {attempt}")
        page.get_by_role("button", name="Sign in").click()
        page.locator("#sign-in-error").wait_for()
    assert "this account is locked until" in page.locator("#sign-in-error").inner_text()
    page.get_by_label("Username").fill("bob")
    page.get_by_label("Password").fill(PASSWORD)  # right, but locked
    page.get_by_role("button", name="Sign in").click()
    assert "locked until" in page.locator("#sign-in-error").inner_text()
    assert urlsplit(page.url).path == "/admin/sign-in"
    context.close()


@pytest.mark.parametrize(
    "path", ["/admin", "/admin/settings", "/admin/activity", "/admin/directory/users"]
)
def test_pages_without_a_session_redirect_to_sign_in(
    chromium, server: ServerProcess, path: str
) -> None:
    context, page = new_page(chromium, server)
    page.goto(path)
    assert urlsplit(page.url).path == "/admin/sign-in"
    assert page.get_by_role("heading", name="Sign in to the Control panel").is_visible()
    context.close()


def sign_in(page) -> None:
    """Sign in as ``admin`` on the sign-in page."""
    page.goto("/admin/sign-in")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Control panel", exact=True).wait_for()


def test_no_page_of_the_path_scrolls_sideways_on_a_phone(chromium, server: ServerProcess) -> None:
    """At 390 px, wide tables scroll in their own box, a long UPN wraps in its heading, and
    an event's date is not broken at its hyphens.

    The tokens table's visually hidden "Action" header escaped its scrolled box (absolutely
    positioned, it is laid out against the page), which then scrolled sideways by 160 px; a
    user's page headed by a UPN as Entra sends them ran off the screen.
    """
    create_admin(server, "admin")
    token = server.create_token("entra")
    server.enable_provisioning()
    upn = "adele.vance-longfellow@contoso-international.onmicrosoft.com"
    status, user = entra_request(
        f"{base_url(server)}/scim/v2",
        token,
        "POST",
        "/Users",
        {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": upn},
    )
    assert status == 201 and user is not None
    phone = {"width": 390, "height": 844}  # an iPhone 12-15's CSS pixels
    context = chromium.new_context(base_url=base_url(server), viewport=phone)
    page = context.new_page()
    sign_in(page)
    for path in [
        "/admin",
        "/admin/settings",
        "/admin/activity",
        "/admin/directory/users",
        f"/admin/directory/users/{user['id']}",
    ]:
        page.goto(path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path} is {width} px wide"

    # An event's date stays on one line in its squeezed column ("2026-12-" / "07" before).
    page.goto("/admin/activity")
    for cell in page.locator("table.events tbody td:first-child").all():
        assert _lines_of_date(cell) == 1, cell.inner_text()
    context.close()


# The number of lines the first ten characters (YYYY-MM-DD) of a cell's text are laid out on.
_DATE_LINES = """cell => {
  const text = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
  const tops = new Set();
  let seen = 0;
  for (let node = text.nextNode(); node && seen < 10; node = text.nextNode()) {
    for (let i = 0; i < node.length && seen < 10; i++) {
      if (!node.data[i].trim()) continue;
      const range = document.createRange();
      range.setStart(node, i);
      range.setEnd(node, i + 1);
      tops.add(Math.round(range.getBoundingClientRect().top));
      seen++;
    }
  }
  return tops.size;
}"""


def _lines_of_date(cell) -> int:
    return cell.evaluate(_DATE_LINES)


def test_a_disabled_button_looks_disabled(chromium, server: ServerProcess) -> None:
    """A password session's "Turn local sign-in off" is disabled, and must not look pressable."""
    create_admin(server, "admin")
    context, page = new_page(chromium, server)
    sign_in(page)
    page.goto("/admin/settings")
    button = page.get_by_role("button", name="Turn local sign-in off")
    assert button.is_disabled()
    opacity, cursor = button.evaluate(
        "b => [getComputedStyle(b).opacity, getComputedStyle(b).cursor]"
    )
    assert float(opacity) < 1 and cursor == "not-allowed"
    context.close()


def test_a_page_loads_the_icon_it_names(chromium, server: ServerProcess) -> None:
    """Browsers ask for /favicon.ico unless a page names its icon: a 404 in the access log."""
    context, page = new_page(chromium, server)
    asked: list[str] = []
    page.on("request", lambda request: asked.append(urlsplit(request.url).path))
    page.goto("/admin/sign-in")
    page.wait_for_load_state("networkidle")
    context.close()

    assert "/admin/static/icon.svg" in asked
