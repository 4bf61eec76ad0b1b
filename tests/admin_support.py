"""Helpers for the control panel tests: an admin account and a signed-in test client."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from admin.accounts import AdminAccounts

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


def create_admin(app: Flask, username: str = USERNAME, password: str = PASSWORD) -> None:
    """Add an admin account to the app's data directory.

    Written through a second accounts object (as ``python app.py admin create`` would), with
    a cheap pbkdf2 hash so that signing in is fast; the server checks any werkzeug hash.
    """
    path = app.extensions["proware.admin"].accounts.path
    AdminAccounts(path, hash_method="pbkdf2:sha256:1000").create(username, password)


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
