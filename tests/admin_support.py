"""Helpers for the control panel tests: an admin account and a signed-in test client."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from admin.accounts import FILE_NAME as ACCOUNTS_FILE
from admin.accounts import AdminAccounts
from storage.controlfile import ControlFile
from storage.documents import SharedDocument

USERNAME = "alice"
PASSWORD = "correct horse battery staple"

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(response: TestResponse) -> str:
    """The CSRF token in the first form of a page."""
    found = _CSRF.search(response.get_data(as_text=True))
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def data_dir_of(app: Flask) -> Path:
    """The data directory the app's control panel keeps its files in."""
    return app.extensions["proware.admin"].accounts.path.parent


def another_process(app: Flask, name: str) -> SharedDocument:
    """The app's shared document ``name`` as another process (the CLI, a second server)
    opens it: a separate object over the same file or database row."""
    backend = app.extensions["proware.backend"]
    if backend.data_dir is not None:
        return ControlFile(backend.data_dir / name)
    from storage.postgres.documents import PostgresDocument

    return PostgresDocument(backend.database, name)


def forget_activity(app: Flask) -> None:
    """Empty the app's activity log (the file, or the database's table)."""
    backend = app.extensions["proware.backend"]
    if backend.data_dir is not None:
        app.extensions["proware.admin"].audit.path.unlink()
        return
    with backend.database.connection() as connection:
        connection.execute("DELETE FROM activity")


def create_admin(app: Flask, username: str = USERNAME, password: str = PASSWORD) -> None:
    """Add an admin account to the app's accounts.

    Written through a second accounts object (as ``python app.py admin create`` would), with
    a cheap pbkdf2 hash so that signing in is fast; the server checks any werkzeug hash. The
    document is the app's own, so the change shows at once on PostgreSQL too (where another
    process sees it within a second: test_admin_commands covers that path).
    """
    document = app.extensions["proware.backend"].document(ACCOUNTS_FILE)
    AdminAccounts(document, hash_method="pbkdf2:sha256:1000").create(username, password)


@dataclass
class AdminClient:
    """A test client that fills in CSRF tokens, as the browser does from the page's form."""

    client: FlaskClient

    def get(self, path: str, **kwargs) -> TestResponse:
        return self.client.get(path, **kwargs)

    def submit(self, page: str, action: str, data: dict | None = None) -> TestResponse:
        """GET ``page`` for its CSRF token, then POST ``data`` to ``action``."""
        token = csrf_of(self.client.get(page))
        return self.client.post(action, data={"csrf_token": token, **(data or {})})

    def sign_in(self, username: str = USERNAME, password: str = PASSWORD) -> TestResponse:
        return self.submit(
            "/admin/sign-in", "/admin/sign-in", {"username": username, "password": password}
        )

    def create_token(self, name: str = "entra", **fields: str) -> str:
        """Create bearer token through the settings page; returns the secret shown once."""
        response = self.submit(
            "/admin/settings", "/admin/settings/tokens", {"name": name, **fields}
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        found = re.search(r'id="new-token"[^>]*value="([^"]+)"', response.get_data(as_text=True))
        assert found, "no new token on the page"
        return found.group(1)


def signed_in(app: Flask) -> AdminClient:
    """A new client of ``app`` signed in as the default admin (created if missing)."""
    admin = app.extensions["proware.admin"]
    if admin.accounts.get(USERNAME) is None:
        create_admin(app)
    client = AdminClient(app.test_client())
    response = client.sign_in()
    assert response.status_code == 302, response.get_data(as_text=True)
    return client
