"""A full or failing disk under the embedded store: a clear error, nothing half-made, and
writes accepted again once space is freed.

Most tests make the disk "full" in-process (``os.write`` or ``os.fsync`` raising ENOSPC), so
they run anywhere; the last one serves from a real, tiny ext4 file system and needs root.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from flask import Flask

from admin import on_serve
from app import main
from scim.service import INDEXES
from storage import controlfile
from storage.journal import JournalRepository
from storage.journal import file as journal_file
from tests.admin_support import USERNAME, signed_in
from tests.conftest import ScimClient
from tests.external import missing
from tests.journal_support import crash_copy
from tests.serverproc import APP, ServerProcess

NO_SPACE = OSError(errno.ENOSPC, "No space left on device")


@contextmanager
def journal_disk_full(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The journal's next append finds the disk full after writing part of its record."""
    real_write = os.write

    def part_then_full(descriptor: int, data: bytes) -> int:
        patch.setattr(journal_file.os, "write", full)
        return real_write(descriptor, bytes(data[:7]))

    def full(descriptor: int, data: bytes) -> int:
        raise NO_SPACE

    with monkeypatch.context() as patch:
        patch.setattr(journal_file.os, "write", part_then_full)
        yield


@contextmanager
def files_disk_full(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Files replaced whole (tokens, accounts, sessions, settings) find the disk full."""

    def full(descriptor: int) -> None:
        raise NO_SPACE

    with monkeypatch.context() as patch:
        patch.setattr(controlfile.os, "fsync", full)
        yield


def assert_disk_full(response) -> None:
    """A SCIM error a client and an operator can act on: 507, the reason, no traceback."""
    assert response.status_code == 507, response.get_data(as_text=True)
    body = response.get_json()
    assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert body["status"] == "507"
    assert "disk is full" in body["detail"] and "not made" in body["detail"]
    assert "Traceback" not in body["detail"] and "Errno" not in body["detail"]


def user_names(scim: ScimClient) -> list[str]:
    listed = scim.get("/Users").get_json()
    return [user["userName"] for user in listed["Resources"]]


@pytest.fixture
def quiet_app(app: Flask) -> Flask:
    """The app answering unexpected errors as a client sees them (a 500), not raising them."""
    app.config["PROPAGATE_EXCEPTIONS"] = False
    return app


# -- SCIM writes --------------------------------------------------------------------------------


def test_a_scim_write_on_a_full_disk_is_a_507_and_is_accepted_once_space_is_freed(
    quiet_app: Flask, scim: ScimClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ann = scim.create_user("ann")
    with journal_disk_full(monkeypatch):
        refused = scim.post("/Users", {"userName": "bob"})
    assert_disk_full(refused)
    assert "Retry-After" not in refused.headers  # nobody knows when space is freed
    assert user_names(scim) == ["ann"]  # reads go on; nothing of bob

    # Space freed: the same write is accepted, without a restart.
    scim.create_user("bob")
    assert scim.patch_ops(f"/Users/{ann['id']}", {"op": "replace", "path": "title", "value": "x"})
    # What kill -9 would leave now: every acknowledged write, and nothing of the refused.
    reopened = JournalRepository(crash_copy(tmp_path / "data", tmp_path / "crash"), INDEXES)
    try:
        assert sorted(user["userName"] for user in reopened.all("User")) == ["ann", "bob"]
    finally:
        reopened.close()


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(OSError(errno.EROFS, "Read-only file system"), id="read-only"),
        pytest.param(OSError(errno.EIO, "Input/output error"), id="io-error"),
    ],
)
def test_a_journal_write_failing_otherwise_is_a_503_until_a_restart(
    quiet_app: Flask, scim: ScimClient, monkeypatch: pytest.MonkeyPatch, failure: OSError
) -> None:
    """A remount read-only or an I/O error: the file's state is unknown, so (as after a
    failed fsync) no change is accepted until a restart recovers from what is on disk."""
    scim.create_user("ann")

    def refuse(descriptor: int, data: bytes) -> int:
        raise failure

    with monkeypatch.context() as patch:
        patch.setattr(journal_file.os, "write", refuse)
        refused = scim.post("/Users", {"userName": "bob"})
    later = scim.post("/Users", {"userName": "cid"})

    for response in (refused, later):
        assert response.status_code == 503, response.get_data(as_text=True)
        assert "until the server restarts" in response.get_json()["detail"]
        assert response.headers["Retry-After"]
    assert user_names(scim) == ["ann"]


# -- the control panel and the command line -----------------------------------------------------


def test_control_panel_writes_on_a_full_disk_are_507_pages_and_work_once_space_is_freed(
    quiet_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Creating a token, switching provisioning, signing in and out: each writes a small
    file; on a full disk each is refused with a page that says why, never a 500."""
    admin = signed_in(quiet_app)
    other = type(admin)(quiet_app.test_client())
    tokens_before = quiet_app.extensions["proware"].tokens.list()
    with files_disk_full(monkeypatch):
        responses = {
            "create token": admin.submit(
                "/admin/settings", "/admin/settings/tokens", {"name": "new"}
            ),
            "provisioning": admin.submit(
                "/admin/settings", "/admin/settings/provisioning", {"enabled": "on"}
            ),
            "sign in": other.sign_in(),
        }
    for action, response in responses.items():
        assert response.status_code == 507, (action, response.status_code)
        page = response.get_data(as_text=True)
        assert "disk is full" in page, action
        assert "Traceback" not in page and "Errno" not in page, action
    assert quiet_app.extensions["proware"].tokens.list() == tokens_before

    assert admin.create_token("new")  # space freed: accepted without a restart
    assert other.sign_in().status_code == 302


def test_control_panel_writes_on_a_read_only_disk_are_503_pages_while_reads_go_on(
    quiet_app: Flask, scim: ScimClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a remount read-only even opening an existing file for writing fails (EROFS),
    the lock file of a shared document included."""
    admin = signed_in(quiet_app)
    real_open = os.open

    def read_only(path, flags: int, *args, **kwargs) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, flags, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(controlfile.os, "open", read_only)
        refused = admin.submit("/admin/settings", "/admin/settings/tokens", {"name": "new"})
        listed = scim.get("/Users")

    assert refused.status_code == 503, refused.status_code
    page = refused.get_data(as_text=True)
    assert "could not write to its disk" in page and "Errno" not in page
    assert listed.status_code == 200
    assert admin.create_token("new")  # writable again


def test_token_create_on_a_full_disk_says_so_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "proware.toml"
    config.write_text('[storage]\npath = "data"\n', encoding="utf-8")
    with files_disk_full(monkeypatch):
        code = main(["--config", str(config), "token", "create", "--name", "entra"])
    captured = capsys.readouterr()

    assert code == 1
    assert captured.out == ""  # no token printed: none was saved
    assert "control.json: no space left to write" in captured.err
    assert "Traceback" not in captured.err
    assert main(["--config", str(config), "token", "list"]) == 0
    assert "entra" not in capsys.readouterr().out


def test_serve_on_a_full_disk_without_an_admin_starts_and_says_how_to_get_one(
    quiet_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The setup link is saved at start: a full disk must not stop a server whose data reads
    fine (restarting is what an operator tries first)."""
    printed: list[str] = []
    with files_disk_full(monkeypatch):
        on_serve(quiet_app, "python app.py", "http://127.0.0.1:8000", out=printed.append)

    (message,) = printed
    assert "No admin yet, and no setup link could be saved" in message
    assert "no space left to write" in message
    assert "python app.py admin create USERNAME" in message


# -- a real full disk ---------------------------------------------------------------------------


@contextmanager
def tiny_file_system(image: Path, mount_point: Path, megabytes: int) -> Iterator[None]:
    """A fresh ext4 file system of ``megabytes`` loop-mounted at ``mount_point`` (root only:
    where it cannot be made the test skips locally, and fails in CI, which runs as root)."""
    if os.geteuid() != 0 or shutil.which("mkfs.ext4") is None:
        missing("a real full disk needs root and mkfs.ext4 (to loop-mount a tiny ext4)")
    with image.open("wb") as file:
        file.truncate(megabytes << 20)
    made = subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], capture_output=True, text=True)
    mount_point.mkdir(parents=True, exist_ok=True)
    mounted = made.returncode == 0 and (
        subprocess.run(
            ["mount", "-o", "loop", str(image), str(mount_point)], capture_output=True, text=True
        ).returncode
        == 0
    )
    if not mounted:
        missing(f"cannot loop-mount an ext4 image here: {made.stderr.strip() or 'mount'}")
    try:
        yield
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)


@pytest.mark.slow
def test_the_real_server_on_a_full_disk_refuses_clearly_loses_nothing_and_recovers(
    tmp_path: Path,
) -> None:
    """The real server, its data directory on a 3 MB ext4: creates until the disk is full
    get 507s (never a 500) while reads go on; once space is freed, creates are accepted
    without a restart; after kill -9 every acknowledged user is there."""
    server = ServerProcess(tmp_path / "server", threads=4)
    with tiny_file_system(tmp_path / "disk.img", server.data_dir, megabytes=3):
        ballast = server.data_dir / "ballast"
        ballast.write_bytes(os.urandom(600_000))  # what the operator frees later
        token = server.create_token()
        server.enable_provisioning()
        subprocess.run(
            [sys.executable, str(APP), "--config", str(server.config_path), "admin", "create"]
            + [USERNAME],
            input="correct horse battery staple\n",
            capture_output=True,
            text=True,
            check=True,
        )
        connections = []

        def connect():
            connections.append(server.connect(token))
            return connections[-1]

        try:
            server.start()
            scim = connect()
            acknowledged: list[str] = []
            refusals: list[tuple[int, object]] = []

            def create(number: int) -> int:
                reply = scim.post("/Users", {"userName": f"user{number}", "title": "x" * 200})
                if reply.status == 201:
                    acknowledged.append(reply.body["id"])
                else:
                    refusals.append((reply.status, reply.body))
                return reply.status

            number = 0
            while len(refusals) < 5 and number < 20_000:
                create(number)
                number += 1
            assert refusals, "the disk never filled up"
            assert {status for status, _ in refusals} == {507}, refusals[:3]
            assert "disk is full" in refusals[0][1]["detail"]  # type: ignore[index]
            assert scim.get("/Users?count=1").body["totalResults"] == len(acknowledged)

            ballast.unlink()
            assert [create(number + extra) for extra in range(20)] == [201] * 20

            server.kill()
            server.start()
            scim = connect()
            found: set[str] = set()
            while True:
                page = scim.get(f"/Users?attributes=id&count=1000&startIndex={len(found) + 1}")
                found.update(user["id"] for user in page.body["Resources"])
                if not page.body["Resources"]:
                    break
            assert found == set(acknowledged)
        finally:
            for connection in connections:
                connection.close()
            server.stop(timeout=10)
