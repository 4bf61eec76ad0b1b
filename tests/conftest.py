"""Fixtures: a fresh app, store and token per test (flaskr's conftest pattern)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from scim.config import Settings, StorageSettings

PREFIX = "/scim/v2"
SCIM_JSON = "application/scim+json"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Built-in defaults with the data directory in a temp dir."""
    return Settings(storage=StorageSettings(path=tmp_path / "data"), source="test")


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    app = create_app(settings)
    app.config["TESTING"] = True
    yield app
    app.extensions["proware"].repository.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def token(app: Flask) -> str:
    """A read-write bearer token, with User Provisioning enabled."""
    services = app.extensions["proware"]
    secret, _ = services.tokens.create("entra")
    services.switch.set(True)
    return secret


@dataclass
class ScimClient:
    """The Flask test client with the bearer token and the SCIM prefix filled in."""

    client: FlaskClient
    token: str

    def request(self, method: str, path: str, body: object = None, **kwargs):
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        if body is not None:
            # Entra's content type (entra-provisioning.md Q8), not application/json.
            kwargs["data"] = body if isinstance(body, str | bytes) else json.dumps(body)
            headers.setdefault("Content-Type", "application/scim+json; charset=utf-8")
        return self.client.open(PREFIX + path, method=method, headers=headers, **kwargs)

    def get(self, path: str, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: object = None, **kwargs):
        return self.request("POST", path, body, **kwargs)

    def put(self, path: str, body: object = None, **kwargs):
        return self.request("PUT", path, body, **kwargs)

    def patch(self, path: str, body: object = None, **kwargs):
        return self.request("PATCH", path, body, **kwargs)

    def delete(self, path: str, **kwargs):
        return self.request("DELETE", path, **kwargs)


@pytest.fixture
def scim(client: FlaskClient, token: str) -> ScimClient:
    return ScimClient(client, token)
