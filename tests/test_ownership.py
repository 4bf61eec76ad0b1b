"""Files of the data directory that are not its owner's: named with the chown that fixes them.

The owners are faked (``owner_of``), so that these run as root or not.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from storage import ownership
from storage.errors import PermissionDenied

SERVICE_UID = 54321  # the service's user (``proware``); no such user need exist here
DENIED = PermissionError(13, "Permission denied")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    for name in ("control.json", "proware.json", "proware.journal.00000001"):
        (tmp_path / name).write_bytes(b"")
    return tmp_path


def owned(monkeypatch: pytest.MonkeyPatch, data_dir: Path, *roots: str) -> None:
    """The directory and its files are the service user's, but ``roots`` (root's)."""
    monkeypatch.setattr(
        ownership, "owner_of", lambda path: 0 if path.name in roots else SERVICE_UID
    )


def test_a_file_root_left_is_named_with_the_chown_that_gives_it_back(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    """README (systemd): "give it back with `chown proware: FILE`"; the message said "the
    user that owns the directory" and left the operator to find out who that is."""
    owned(monkeypatch, data_dir, "control.json")
    path = data_dir / "control.json"
    name = ownership.user_name(SERVICE_UID)

    assert str(PermissionDenied(path, DENIED)) == (
        f"cannot open {path}: Permission denied; control.json is root's: give it back with "
        f"'chown {name}: {path}' and run Proware and its commands as {name}"
    )


def test_several_files_root_left_are_given_back_at_once(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    """A server run once as root leaves its data file, journal and control files root's: a
    start named one of them per attempt (four failed starts, four chowns, here)."""
    owned(monkeypatch, data_dir, "control.json", "proware.json", "proware.journal.00000001")
    path = data_dir / "proware.json"
    name = ownership.user_name(SERVICE_UID)

    assert str(PermissionDenied(path, DENIED)) == (
        f"cannot open {path}: Permission denied; proware.json and 2 more file(s) there are "
        f"not {name}'s: give them back with 'chown -R {name}: {data_dir}' and run Proware "
        f"and its commands as {name}"
    )


def test_a_file_of_the_directory_owner_that_cannot_be_opened_keeps_the_general_advice(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    """Its mode, not its owner, keeps it closed: no chown would help."""
    owned(monkeypatch, data_dir)
    path = data_dir / "control.json"

    assert str(PermissionDenied(path, DENIED)) == (
        f"cannot open {path}: Permission denied; run Proware and its commands as the user "
        f"that owns {data_dir} (and give the file back to that user)"
    )


def test_an_unknown_uid_is_named_by_its_number() -> None:
    assert ownership.user_name(2**31 - 3) == str(2**31 - 3)
