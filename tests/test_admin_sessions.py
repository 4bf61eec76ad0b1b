"""Control panel sessions: the secret on disk, cookie flags, idle timeout, sign-out."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from flask import Flask, request

from admin.sessions import COOKIE_NAME
from app import create_app
from server.config import Settings
from storage.backend import load_or_create_secret
from storage.errors import CorruptStore
from tests.admin_support import (
    PASSWORD,
    USERNAME,
    AdminClient,
    create_admin,
    csrf_of,
    data_dir_of,
    signed_in,
)
from tests.storage_contract import FixedClock


@pytest.fixture
def clock(app: Flask) -> FixedClock:
    """The control panel's clock, standing still until the test moves it."""
    fixed = FixedClock()
    app.extensions["proware.admin"].clock = fixed
    return fixed


def key_path(app: Flask) -> Path:
    return data_dir_of(app) / "session.key"


def set_cookie_header(response) -> str:
    headers = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(COOKIE_NAME)]
    assert headers, "no session cookie was set"
    return headers[-1]


def test_the_secret_is_generated_on_first_start_with_mode_0600(app: Flask) -> None:
    path = key_path(app)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_text().strip()) == 64
    assert app.secret_key == bytes.fromhex(path.read_text().strip())


def test_the_secret_is_kept_across_restarts_so_sessions_survive(
    app: Flask, settings: Settings
) -> None:
    panel = signed_in(app)
    cookie = panel.client.get_cookie(COOKIE_NAME, path="/admin")
    assert cookie is not None
    app.extensions["proware"].repository.close()  # one server per data directory
    restarted = create_app(settings)
    try:
        assert restarted.secret_key == app.secret_key
        client = restarted.test_client()
        client.set_cookie(COOKIE_NAME, cookie.value, path="/admin")
        assert client.get("/admin/settings").status_code == 200
    finally:
        restarted.extensions["proware"].repository.close()


def test_two_apps_never_share_a_secret(tmp_path: Path) -> None:
    first = load_or_create_secret(tmp_path / "a" / "session.key")
    second = load_or_create_secret(tmp_path / "b" / "session.key")
    assert first != second and len(first) == 32


def test_a_secret_readable_by_others_is_made_private(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "session.key"
    secret = load_or_create_secret(path)
    path.chmod(0o644)
    assert load_or_create_secret(path) == secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "readable by others" in caplog.text
    assert secret.hex() not in caplog.text


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"short", id="short"),
        pytest.param(b"z" * 64 + b"\n", id="not-hex"),
        pytest.param(b"0" * 65 + b"\n", id="odd-length"),
        pytest.param("é".encode() * 64, id="not-ascii"),
        pytest.param(b"", id="empty"),
    ],
)
def test_a_damaged_secret_file_stops_the_start_with_what_to_do(
    tmp_path: Path, content: bytes
) -> None:
    """A storage error (serve prints it and exits 1), never a bare ValueError's traceback."""
    path = tmp_path / "session.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(CorruptStore, match="holds no valid session key; delete it and restart"):
        load_or_create_secret(path)


def test_the_cookie_is_httponly_samesite_lax_and_scoped_to_admin(app: Flask) -> None:
    create_admin(app)
    client = AdminClient(app.test_client())
    header = set_cookie_header(client.sign_in())
    assert "HttpOnly" in header
    assert "SameSite=Lax" in header
    assert "Path=/admin" in header
    assert "Secure" not in header  # plain http: a Secure cookie would never come back


def test_the_cookie_is_secure_when_the_request_came_over_https(app: Flask) -> None:
    create_admin(app)
    client = app.test_client()
    page = client.get("/admin/sign-in", base_url="https://proware.example")
    response = client.post(
        "/admin/sign-in",
        base_url="https://proware.example",
        data={"csrf_token": csrf_of(page), "username": USERNAME, "password": PASSWORD},
    )
    assert response.status_code == 302
    assert "Secure" in set_cookie_header(response)


def test_signing_in_replaces_the_anonymous_session(app: Flask) -> None:
    create_admin(app)
    client = AdminClient(app.test_client())
    before = csrf_of(client.get("/admin/sign-in"))
    client.sign_in()
    after = csrf_of(client.get("/admin/settings"))
    assert before != after


def test_an_idle_session_ends_and_the_sign_in_page_says_why(app: Flask, clock: FixedClock) -> None:
    panel = signed_in(app)
    clock.advance(minutes=29)
    assert panel.get("/admin/settings").status_code == 200  # activity moves the deadline
    clock.advance(minutes=29)
    assert panel.get("/admin/settings").status_code == 200
    clock.advance(minutes=31)
    response = panel.get("/admin/settings")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/sign-in?next=/admin/settings")
    page = panel.get(response.headers["Location"]).get_data(as_text=True)
    assert "signed out after 30 minutes without activity" in page


def test_a_session_ends_after_twelve_hours_even_when_busy(app: Flask, clock: FixedClock) -> None:
    panel = signed_in(app)
    for _ in range(25):
        clock.advance(minutes=29)
        response = panel.get("/admin/settings")
    assert response.status_code == 302
    assert "lasted 12 hours" in panel.get("/admin/sign-in").get_data(as_text=True)


def test_sign_out_ends_the_session_and_a_replayed_cookie_is_refused(app: Flask) -> None:
    panel = signed_in(app)
    cookie = panel.client.get_cookie(COOKIE_NAME, path="/admin")
    assert cookie is not None
    response = panel.submit("/admin/settings", "/admin/sign-out")
    assert response.status_code == 302 and response.headers["Location"] == "/admin/sign-in"
    assert "You have signed out." in panel.get("/admin/sign-in").get_data(as_text=True)
    assert panel.get("/admin/settings").status_code == 302

    thief = app.test_client()
    thief.set_cookie(COOKIE_NAME, cookie.value, path="/admin")
    assert thief.get("/admin/settings").status_code == 302


def test_a_password_reset_signs_every_session_out(app: Flask) -> None:
    panel = signed_in(app)
    app.extensions["proware.admin"].accounts.reset_password(USERNAME, "another long passphrase")
    response = panel.get("/admin/settings")
    assert response.status_code == 302
    assert "password of this account was changed" in panel.get("/admin/sign-in").get_data(
        as_text=True
    )


def test_a_forged_cookie_is_ignored(app: Flask) -> None:
    create_admin(app)
    client = app.test_client()
    client.set_cookie(COOKIE_NAME, '{"admin": "alice"}', path="/admin")
    assert client.get("/admin/settings").status_code == 302


def test_only_control_panel_requests_open_the_session(app: Flask) -> None:
    panel = signed_in(app)
    cookie = panel.client.get_cookie(COOKIE_NAME, path="/admin")
    assert cookie is not None
    interface = app.session_interface
    header = {"Cookie": f"{COOKIE_NAME}={cookie.value}"}
    with app.test_request_context("/admin/settings", headers=header):
        opened = interface.open_session(app, request)
        assert opened is not None and not interface.is_null_session(opened)
        assert opened["admin"] == USERNAME
    for path in ("/scim/v2/Users", "/healthz", "/"):
        with app.test_request_context(path, headers=header):
            assert interface.is_null_session(interface.open_session(app, request))
