"""CSRF: every state-changing form needs its session's token; without it nothing changes."""

from __future__ import annotations

import pytest
from flask import Flask

from tests.admin_support import PASSWORD, USERNAME, create_admin, csrf_of, signed_in

# Every POST route of the control panel, with a body that would change something.
FORMS = [
    pytest.param("/admin/settings/provisioning", {"enabled": "1"}, id="provisioning-switch"),
    pytest.param("/admin/settings/tokens", {"name": "entra"}, id="create-token"),
    pytest.param("/admin/settings/tokens/revoke", {"name": "old"}, id="revoke-token"),
    pytest.param("/admin/sign-out", {}, id="sign-out"),
]


def state(app: Flask) -> tuple:
    services = app.extensions["proware"]
    tokens = [(t.name, t.status) for t in services.tokens.list()]
    return services.switch.enabled(), tokens


@pytest.mark.parametrize(("action", "data"), FORMS)
@pytest.mark.parametrize("token", ["missing", "wrong", "another-session"])
def test_a_form_without_its_sessions_token_is_refused_and_changes_nothing(
    app: Flask, action: str, data: dict, token: str
) -> None:
    app.extensions["proware"].tokens.create("old")
    panel = signed_in(app)
    other = signed_in(app)
    before = state(app)
    form = dict(data)
    if token == "wrong":
        form["csrf_token"] = "x" * 43
    elif token == "another-session":
        form["csrf_token"] = csrf_of(other.get("/admin/settings"))
    response = panel.client.post(action, data=form)
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert "nothing was changed" in response.get_data(as_text=True)
    assert state(app) == before
    assert panel.get("/admin/settings").status_code == 200  # still signed in


def test_the_sign_in_form_needs_its_token_too(app: Flask) -> None:
    """No login CSRF: a cross-site form cannot sign the browser into someone's account."""
    create_admin(app)
    client = app.test_client()
    response = client.post("/admin/sign-in", data={"username": USERNAME, "password": PASSWORD})
    assert response.status_code == 400
    assert client.get("/admin/settings").status_code == 302


def test_the_setup_form_needs_its_token_too(app: Flask) -> None:
    admin = app.extensions["proware.admin"]
    client = app.test_client()
    secret = admin.setup.issue()
    client.get(f"/admin/setup/{secret}")
    response = client.post(
        f"/admin/setup/{secret}",
        data={"username": "eve", "password": PASSWORD, "confirm": PASSWORD},
    )
    assert response.status_code == 400
    assert not admin.accounts.any()
    assert admin.setup.check(secret).state == "valid"  # a forged form spends nothing


def test_the_same_form_with_its_token_works(app: Flask) -> None:
    panel = signed_in(app)
    response = panel.submit("/admin/settings", "/admin/settings/provisioning", {"enabled": "1"})
    assert response.status_code == 302
    assert app.extensions["proware"].switch.enabled()


def test_reading_pages_needs_no_token(app: Flask) -> None:
    panel = signed_in(app)
    assert panel.get("/admin/activity?outcome=refused").status_code == 200
