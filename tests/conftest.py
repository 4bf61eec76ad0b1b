"""Fixtures: a fresh app, store and token per test (flaskr's conftest pattern)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from admin.connection import TIMER_THREAD as CONNECTION_TIMER_THREAD
from app import create_app
from scim.tokens import TIMER_THREAD
from server.commands import LIBRARY_LOGGERS
from server.config import Settings, StorageSettings
from storage.settings import POSTGRESQL, TINYDB
from tests.journal_support import Stores
from tests.pgserver import clean_database

PREFIX = "/scim/v2"
# The timers of bookkeeping saves (token uses, the connection status): see below.
TIMER_THREADS = (TIMER_THREAD, CONNECTION_TIMER_THREAD)
SCIM_JSON = "application/scim+json"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


# Test modules whose every test runs on both backends: the SCIM API as clients see it, Entra's
# recorded exchanges and tolerances. The rest run on the default embedded store.
BOTH_BACKENDS = (
    "test_api_",
    "test_entra_exchanges",
    "test_patch_entra",
    "test_tolerances",
    "test_admin_pages",
    "test_sso",
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rpartition(".")[2]
    if "backend" in metafunc.fixturenames and module.startswith(BOTH_BACKENDS):
        metafunc.parametrize("backend", [TINYDB, POSTGRESQL], indirect=True)


@pytest.fixture(autouse=True)
def _token_use_timers_end_with_their_test() -> Iterator[None]:
    """Call off the token-use (and connection status) saves still scheduled when a test ends.

    Many tests make an app of their own and drop it without flushing it (the ``app``
    fixture flushes). Each token use schedules a save a minute later (scim.tokens): in a
    long run it fired into later tests, and in the last minute's tests into the exit, where
    it logged "could not save token last-use times" for a data directory gone by then (27
    tracebacks after the summary of one full run).
    """
    yield
    for thread in threading.enumerate():
        if isinstance(thread, threading.Timer) and thread.name in TIMER_THREADS:
            thread.cancel()


def wait_for(condition: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    """Return once ``condition()`` holds; fail after ``timeout`` seconds. What a test waits
    for instead of sleeping a guess, which a loaded machine outlasts."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """`serve` configures the "proware" loggers and the libraries' for stdout (server.commands
    .configure_logging); put them back afterwards, so that later tests' caplog sees them."""
    loggers = [logging.getLogger(name) for name in ("proware", *LIBRARY_LOGGERS)]
    saved = [(logger.handlers[:], logger.level, logger.propagate) for logger in loggers]
    access = logging.getLogger("proware.access")
    access_saved = (access.disabled, access.level)
    yield
    for logger, (handlers, level, propagate) in zip(loggers, saved, strict=True):
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
    access.disabled, level = access_saved
    access.setLevel(level)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The storage backend a test's app runs on (tinydb unless its module runs on both)."""
    return getattr(request, "param", TINYDB)


@pytest.fixture
def settings(tmp_path: Path, backend: str) -> Settings:
    """Built-in defaults with the data directory in a temp dir; on PostgreSQL, an emptied
    database of the test session's server (skipped locally without PostgreSQL)."""
    if backend == POSTGRESQL:
        storage = StorageSettings(backend=POSTGRESQL, dsn=clean_database(), path=tmp_path / "data")
    else:
        storage = StorageSettings(path=tmp_path / "data")
    return Settings(storage=storage, source="test")


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    app = create_app(settings)
    app.config["TESTING"] = True
    yield app
    app.extensions["proware"].tokens.flush()  # calls off a pending save of token uses
    app.extensions["proware.backend"].close()


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

    def patch_ops(self, path: str, *operations: dict, **kwargs):
        """PATCH ``path`` with a PatchOp message holding ``operations``."""
        return self.patch(path, {"schemas": [PATCH_OP], "Operations": list(operations)}, **kwargs)

    def create_user(self, user_name: str, **attributes: object) -> dict:
        """POST a user and return the created resource (asserting the 201)."""
        response = self.post("/Users", {"userName": user_name, **attributes})
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    def create_group(
        self, display_name: str, member_ids: Sequence[str] = (), **attributes: object
    ) -> dict:
        """POST a group with these user ids as members and return it (asserting the 201)."""
        members = [{"value": member_id} for member_id in member_ids]
        body = {"displayName": display_name, **({"members": members} if members else {})}
        response = self.post("/Groups", {**body, **attributes})
        assert response.status_code == 201, response.get_json()
        return response.get_json()


@pytest.fixture
def scim(client: FlaskClient, token: str) -> ScimClient:
    return ScimClient(client, token)


@pytest.fixture
def scim_for() -> Callable[[Flask], ScimClient]:
    """A ScimClient for an app: a new token there (read-write unless asked), provisioning on."""

    def make(app: Flask, *, name: str = "entra", read_only: bool = False) -> ScimClient:
        services = app.extensions["proware"]
        secret, _ = services.tokens.create(name, read_only=read_only)
        services.switch.set(True)
        return ScimClient(app.test_client(), secret)

    return make


@pytest.fixture
def events(app: Flask) -> list[dict]:
    """Every activity event the app emits during the test, in order."""
    received: list[dict] = []
    app.extensions["proware"].listeners.append(received.append)
    return received


# -- the journal store's tests (test_journal_*, test_backup) --------------------------------


@pytest.fixture
def stores() -> Iterator[Stores]:
    """Opens journal stores with a fixed clock and counter ids; closes them after the test."""
    opened = Stores()
    yield opened
    opened.close_all()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data directory that does not exist yet."""
    return tmp_path / "data"
