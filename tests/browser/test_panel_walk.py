"""The control panel's pages as a keyboard user, a phone, a zoomed screen and a hostile SCIM
client meet them, in headless Chromium against the real server (tests/browser/conftest.py).

Names on these pages are the SCIM client's to choose: HTML, a script, 400 characters without
a space, a bidirectional override. They must show as text, not run, not widen the page and
not reorder what follows them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.conftest import base_url
from tests.browser.test_admin_path import create_admin, entra_request, sign_in
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.browser

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
LONG = "x" * 400 + "@long.example"
REORDERED = "rtl\u202egnp.exe@evil.example"
SCRIPT = "<script>alert(1)</script>@evil.example"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """The real service with an admin, provisioning on and a token ``entra``."""
    process = ServerProcess(tmp_path / "server")
    create_admin(process, "admin")
    process.token = process.create_token("entra")  # type: ignore[attr-defined]
    process.enable_provisioning()
    process.start()
    try:
        yield process
    finally:
        process.stop(timeout=10)


def provision(server: ServerProcess, path: str, body: dict) -> dict:
    """POST a resource to the Tenant URL as Entra would; the created resource."""
    tenant = f"{base_url(server)}/scim/v2"
    status, created = entra_request(tenant, server.token, "POST", path, body)  # type: ignore[attr-defined]
    assert status == 201 and created is not None, created
    return created


def hostile_directory(server: ServerProcess) -> tuple[dict[str, str], str]:
    """Users named to break a page, and a group of them named so too; (ids by name, group id)."""
    names = {
        SCRIPT: "<img src=x onerror=alert(2)><b>bold</b>",
        LONG: "Y" * 600,
        REORDERED: "Adm\u202enimda \U0001f600",
    }
    ids = {
        name: provision(
            server, "/Users", {"schemas": [USER], "userName": name, "displayName": shown}
        )["id"]
        for name, shown in names.items()
    }
    group = provision(
        server,
        "/Groups",
        {
            "schemas": [GROUP],
            "displayName": "Z" * 300 + " <b>\u202egroup",
            "members": [{"value": id} for id in ids.values()],
        },
    )
    return ids, group["id"]


# The horizontal extent of the text of an element's first text node's characters, in order.
_LETTER_LEFTS = """element => {
  const node = [...element.childNodes].find(n => n.nodeType === Node.TEXT_NODE && n.data.trim());
  const lefts = [];
  for (let i = 0; i < node.length; i++) {
    const range = document.createRange();
    range.setStart(node, i);
    range.setEnd(node, i + 1);
    lefts.push(range.getBoundingClientRect().left);
  }
  return lefts;
}"""


def test_names_a_scim_client_chose_neither_run_nor_reorder_nor_widen_the_page(
    chromium, server: ServerProcess
) -> None:
    """A 400-character userName ran 3,000 px off a 320 px screen in the breadcrumbs, a
    600-character displayName off a group's member list; "rtl\\u202egnp.exe" read
    "rtlexe.png" with the user's "active" badge pulled into the middle of it."""
    ids, group = hostile_directory(server)
    context = chromium.new_context(
        base_url=base_url(server), viewport={"width": 320, "height": 700}
    )
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    sign_in(page)
    paths = [
        "/admin/directory/users",
        "/admin/directory/users?q=evil",
        "/admin/directory/groups",
        f"/admin/directory/groups/{group}",
        "/admin/activity",
        *(f"/admin/directory/users/{id}" for id in ids.values()),
    ]
    for path in paths:
        page.goto(path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 320, f"{path} is {width} px wide"
    assert dialogs == []

    # The script's name is text on its page, in the heading and the title.
    page.goto(f"/admin/directory/users/{ids[SCRIPT]}")
    assert page.get_by_role("heading", level=1).inner_text().startswith(SCRIPT)
    assert page.title().startswith(SCRIPT)

    # The override is written out, and the text after it keeps its order.
    page.goto(f"/admin/directory/users/{ids[REORDERED]}")
    heading = page.get_by_role("heading", level=1)
    assert heading.inner_text().startswith("rtl\\u202egnp.exe@evil.example")
    assert "\u202e" not in page.content()
    lefts = heading.evaluate(_LETTER_LEFTS)
    rows = {}  # letters wrap at 320 px: compare within each line
    for index, left in enumerate(lefts):
        rows.setdefault(round(heading.evaluate(_TOP, index)), []).append(left)
    assert all(row == sorted(row) for row in rows.values()), lefts
    badge = heading.locator(".badge").bounding_box()
    assert badge is not None and badge["y"] >= max(rows) - 1  # on or below the name's last line
    context.close()


_TOP = """(element, index) => {
  const node = [...element.childNodes].find(n => n.nodeType === Node.TEXT_NODE && n.data.trim());
  const range = document.createRange();
  range.setStart(node, index);
  range.setEnd(node, index + 1);
  return range.getBoundingClientRect().top;
}"""


def test_the_settings_page_fits_a_320_px_screen(chromium, server: ServerProcess) -> None:
    """WCAG 1.4.10 (reflow, 320 CSS px): single sign-on's facts, a label column beside a
    value column, ran 26 px past the screen."""
    context = chromium.new_context(
        base_url=base_url(server), viewport={"width": 320, "height": 700}
    )
    page = context.new_page()
    sign_in(page)
    page.goto("/admin/settings")
    assert page.evaluate("document.documentElement.scrollWidth") <= 320
    context.close()


# The focused element's outline colour against what lies just outside it, as [ratio, what].
_RING_CONTRAST = """() => {
  const focused = document.activeElement;
  if (!focused || focused === document.body) return [21, "the browser's own controls"];
  const style = getComputedStyle(focused);
  if (style.outlineStyle === "none" || parseFloat(style.outlineWidth) === 0) return [0, "none"];
  const rgb = text => text.match(/[\\d.]+/g).map(Number);
  const luminance = ([r, g, b]) => {
    const linear = v => (v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    const [R, G, B] = [r, g, b].map(linear);
    return 0.2126 * R + 0.7152 * G + 0.0722 * B;
  };
  const box = focused.getBoundingClientRect();
  const gap = parseFloat(style.outlineOffset) + parseFloat(style.outlineWidth) + 2;
  const x = Math.max(0, box.left - gap), y = box.top + box.height / 2;
  const outside = e => !focused.contains(e) && !e.contains(focused);
  const around = document.elementsFromPoint(x, y).find(outside) || focused.parentElement;
  let background = null;
  for (let e = around; e && !background; e = e.parentElement) {
    const colour = rgb(getComputedStyle(e).backgroundColor);
    if (colour.length < 4 || colour[3] > 0) background = colour;
  }
  background = background || [255, 255, 255];
  const [a, b] = [luminance(rgb(style.outlineColor)), luminance(background)].sort((p, q) => q - p);
  return [(a + 0.05) / (b + 0.05), focused.tagName + " " + focused.textContent.trim().slice(0, 30)];
}"""


def test_every_focus_ring_stands_out_three_to_one(chromium, server: ServerProcess) -> None:
    """WCAG 1.4.11: the light blue ring (1.8:1 on white) was drawn on the page as in the
    dark header, so a keyboard user could hardly see which link or button had the focus."""
    server.cli("token", "create", "--name", "soon", "--expires", "2")  # a warning, a Revoke
    context = chromium.new_context(base_url=base_url(server))
    page = context.new_page()
    sign_in(page)
    weak = []
    for path in ("/admin/settings", "/admin/activity", "/admin/directory/users"):
        page.goto(path)
        for _ in range(30):
            page.keyboard.press("Tab")
            ratio, what = page.evaluate(_RING_CONTRAST)
            if ratio < 3:
                weak.append(f"{path}: {what} {ratio:.2f}")
    assert weak == []
    context.close()
