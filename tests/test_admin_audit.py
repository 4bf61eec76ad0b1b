"""The audit log: JSON Lines, rotation by size, an event per acknowledged change, no secrets."""

from __future__ import annotations

import errno
import json
import logging
import os
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st

from admin import activity, audit
from admin.activity import ActivityFilter
from admin.audit import AuditLog
from app import create_app
from scim.service import INDEXES
from server.config import Settings
from storage.memory import MemoryRepository
from storage.repository import CompactionHook
from tests.admin_support import PASSWORD, data_dir_of, signed_in
from tests.conftest import ScimClient


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def audit_path(app: Flask) -> Path:
    return app.extensions["proware.admin"].audit.path


def all_data_bytes(app: Flask) -> bytes:
    """Every file the server wrote in its data directory, concatenated."""
    data_dir = data_dir_of(app)
    return b"".join(path.read_bytes() for path in sorted(data_dir.rglob("*")) if path.is_file())


# -- the file ---------------------------------------------------------------------------------


def test_append_writes_one_json_object_per_line(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "activity.jsonl")
    log.append({"operation": "create", "name": "Zoë"})
    log.append({"operation": "delete", "name": "ann"})
    log.close()
    assert lines(tmp_path / "activity.jsonl") == [
        {"operation": "create", "name": "Zoë"},
        {"operation": "delete", "name": "ann"},
    ]


def test_appends_are_flushed_to_disk_every_sync_every_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No later fsync (compaction hook, rotation) has more than sync_every bytes to write;
    a sync in between starts the count again."""
    flushed: list[int] = []
    path = tmp_path / "activity.jsonl"
    monkeypatch.setattr(audit.os, "fdatasync", lambda fd: flushed.append(path.stat().st_size))
    log = AuditLog(path, sync_every=1000)
    line = len(audit.encode({"operation": "create", "n": 100}))
    for number in range(100, 200):
        log.append({"operation": "create", "n": number})
    every = -(-1000 // line)  # appends to reach 1,000 bytes
    assert flushed == [line * every * k for k in range(1, 100 // every + 1)]
    assert len(flushed) >= 2

    log.sync()
    flushed.clear()
    for number in range(100, 100 + 1000 // line):
        log.append({"operation": "create", "n": number})
    assert flushed == []


def test_the_first_append_makes_a_missing_directory(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "new" / "data" / "activity.jsonl")
    log.append({"operation": "create"})
    log.append({"operation": "delete"})
    log.close()
    assert lines(tmp_path / "new" / "data" / "activity.jsonl") == [
        {"operation": "create"},
        {"operation": "delete"},
    ]


def test_the_log_file_is_private(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "activity.jsonl")
    log.append({"operation": "create"})
    log.close()
    assert (tmp_path / "activity.jsonl").stat().st_mode & 0o077 == 0


def test_rotation_keeps_backups_and_deletes_the_oldest(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "activity.jsonl", max_bytes=1024, backups=2)
    for number in range(60):  # about 45 bytes each: several rotations
        log.append({"n": number, "padding": "x" * 30})
    log.close()
    files = audit.log_files(tmp_path / "activity.jsonl", backups=2)
    assert [file.name for file in files] == [
        "activity.jsonl",
        "activity.jsonl.1",
        "activity.jsonl.2",
    ]
    assert not (tmp_path / "activity.jsonl.3").exists()
    assert all(file.stat().st_size <= 1024 for file in files)
    kept = [event["n"] for event in audit.read_newest_first(tmp_path / "activity.jsonl", 2)]
    assert kept == list(range(59, 59 - len(kept), -1))  # newest first, nothing skipped
    assert 40 < len(kept) < 60  # the oldest ones were rotated away


def test_rotated_lines_are_never_rewritten(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "activity.jsonl", max_bytes=1024, backups=3)
    for number in range(30):
        log.append({"n": number, "padding": "x" * 30})
    rotated = (tmp_path / "activity.jsonl.1").read_bytes()
    log.append({"n": 30})
    log.close()
    assert (tmp_path / "activity.jsonl.1").read_bytes() == rotated


def test_appends_do_not_fsync_but_sync_and_close_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(audit.os, "fsync", lambda fd: (calls.append(fd), real_fsync(fd)))
    log = AuditLog(tmp_path / "activity.jsonl")
    for number in range(100):
        log.append({"n": number})
    assert calls == []
    log.sync()  # the file, and the directory that got a new name
    assert len(calls) == 2
    log.close()
    assert len(calls) == 3


def test_a_line_cut_by_a_crash_is_skipped_and_the_next_event_starts_a_new_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "activity.jsonl"
    path.write_bytes(b'{"n":1}\n{"n":2,"na')
    log = AuditLog(path)
    log.append({"n": 3})
    log.close()
    assert [event["n"] for event in audit.read_newest_first(path)] == [3, 1]


def test_a_failed_append_is_counted_not_raised(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    log = AuditLog(blocker / "activity.jsonl")
    log.append({"n": 1})
    assert log.failures == 1


def _disk_fills_up(monkeypatch: pytest.MonkeyPatch, after_bytes: int) -> None:
    """The next write stores ``after_bytes`` bytes, then the disk is full."""
    real_write = os.write

    def part_then_full(descriptor: int, data: bytes) -> int:
        monkeypatch.setattr(audit.os, "write", full)
        return real_write(descriptor, bytes(data[:after_bytes]))

    def full(descriptor: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(audit.os, "write", part_then_full)


def test_an_append_cut_short_by_a_full_disk_leaves_nothing_to_spoil_the_next_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills up midway through a line: that event is counted as failed, and once
    space is freed the next one is a whole line of its own, not glued to the fragment."""
    path = tmp_path / "activity.jsonl"
    log = AuditLog(path)
    log.append({"n": 1})
    _disk_fills_up(monkeypatch, after_bytes=5)
    log.append({"n": 2, "operation": "create"})
    monkeypatch.undo()
    log.append({"n": 3})

    assert log.failures == 1
    assert lines(path) == [{"n": 1}, {"n": 3}]


def test_a_full_disk_is_logged_in_one_line_until_an_append_succeeds_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Every write refused with a 507 records an event: a traceback each flooded the log."""
    path = tmp_path / "activity.jsonl"
    log = AuditLog(path)
    with caplog.at_level(logging.ERROR, logger="proware.audit"):
        _disk_fills_up(monkeypatch, after_bytes=0)
        for n in range(3):
            log.append({"n": n})
        monkeypatch.undo()
        log.append({"n": 3})  # room again
        _disk_fills_up(monkeypatch, after_bytes=0)
        log.append({"n": 4})

    assert log.failures == 4
    expected = (
        f"could not append to the audit log: {path}: no space left to write (No space left "
        "on device); free space on its disk; until that is fixed, events are dropped and "
        "counted on the activity page"
    )
    assert [(record.getMessage(), record.exc_info) for record in caplog.records] == [
        (expected, None),
        (expected, None),
    ]


def test_an_audit_log_this_user_may_not_open_is_logged_in_one_line_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """activity.jsonl left root's by a command run without `sudo -u proware`."""
    path = tmp_path / "activity.jsonl"
    log = AuditLog(path)

    def denied(*args: object) -> int:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(audit.os, "open", denied)
    with caplog.at_level(logging.ERROR, logger="proware.audit"):
        for n in range(3):
            log.append({"n": n})

    assert log.failures == 3
    assert [(record.getMessage(), record.exc_info) for record in caplog.records] == [
        (
            f"could not append to the audit log: cannot open {path}: Permission denied; run "
            f"Proware and its commands as the user that owns {tmp_path} (and give the file "
            "back to that user); until that is fixed, events are dropped and counted on the "
            "activity page",
            None,
        )
    ]


def test_an_append_failing_right_after_a_rotation_leaves_the_new_file_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "activity.jsonl"
    log = AuditLog(path, max_bytes=1024)
    while not audit.rotated_path(path, 1).exists():
        log.append({"padding": "x" * 100})
    rotated = audit.rotated_path(path, 1).read_bytes()
    while path.stat().st_size + 120 <= 1024:
        log.append({"padding": "x" * 100})
    _disk_fills_up(monkeypatch, after_bytes=5)
    log.append({"padding": "y" * 100})  # rotates first, then fails
    monkeypatch.undo()

    assert log.failures == 1
    assert path.read_bytes() == b""
    assert audit.rotated_path(path, 2).read_bytes() == rotated


def test_keys_that_could_hold_secrets_are_never_written(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "activity.jsonl")
    log.append({"operation": "create", "password": "hunter2", "Authorization": "Bearer x"})
    log.close()
    assert lines(tmp_path / "activity.jsonl") == [{"operation": "create"}]


def test_catch_up_appends_committed_events_beyond_the_newest_seq(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "activity.jsonl")
    log.append({"seq": 1, "operation": "create"})
    log.append({"operation": "refused"})  # refusals carry no seq
    asked: list[int] = []

    def committed_after(seq: int) -> list[dict]:
        asked.append(seq)
        return [{"seq": 2, "operation": "update"}, {"seq": 3, "operation": "delete"}]

    assert log.catch_up(committed_after) == 2
    assert asked == [1]
    assert [event.get("seq") for event in log.newest_first()] == [3, 2, None, 1]


# -- fed by the SCIM service ------------------------------------------------------------------


def test_every_acknowledged_change_has_an_event_with_its_request_id(
    app: Flask, scim: ScimClient
) -> None:
    """Each 2xx change answer's X-Request-Id appears in the audit log, with its operation."""
    acknowledged: list[tuple[str, set[str]]] = []

    def change(response, *operations: str):
        assert response.status_code in (200, 201, 204), response.get_data(as_text=True)
        acknowledged.append((response.headers["X-Request-Id"], set(operations)))
        return response.get_json(silent=True)

    ann = change(scim.post("/Users", {"userName": "ann", "active": True}), "create")
    bob = change(scim.post("/Users", {"userName": "bob"}), "create")
    replace = {"op": "replace", "path": "active", "value": False}
    change(scim.patch_ops(f"/Users/{ann['id']}", replace), "disable")
    enable = {"op": "replace", "path": "active", "value": "True"}  # Entra Q2: a string
    change(scim.patch_ops(f"/Users/{ann['id']}", enable), "enable")
    change(
        scim.patch_ops(f"/Users/{ann['id']}", {"op": "add", "path": "title", "value": "CEO"}),
        "update",
    )
    change(scim.put(f"/Users/{bob['id']}", {"userName": "bob", "displayName": "Bob"}), "update")
    sales = change(
        scim.post("/Groups", {"displayName": "Sales", "members": [{"value": ann["id"]}]}),
        "create",
    )
    add = {"op": "add", "path": "members", "value": [{"value": bob["id"]}]}
    change(scim.patch_ops(f"/Groups/{sales['id']}", add), "add member")
    remove = {"op": "remove", "path": f'members[value eq "{ann["id"]}"]'}
    change(scim.patch_ops(f"/Groups/{sales['id']}", remove), "remove member")
    change(scim.delete(f"/Groups/{sales['id']}"), "delete")
    change(scim.delete(f"/Users/{bob['id']}"), "delete")

    events = lines(audit_path(app))
    for request_id, operations in acknowledged:
        logged = {event["operation"] for event in events if event.get("request_id") == request_id}
        assert logged == operations, request_id
    assert all(event["token"] == "entra" for event in events)


def test_an_event_from_the_command_line_is_timed_like_a_request_s(
    app: Flask, scim: ScimClient
) -> None:
    """``sso local-sign-in`` and a config.toml change write :func:`activity.admin_event`s
    beside the requests' events: one form of time for both in ``activity.jsonl`` and
    ``activity tail`` (milliseconds, as every request event has), not microseconds for some."""
    scim.post("/Users", {"userName": "ann"})
    moment = datetime(2026, 12, 8, 3, 57, 16, 272562, tzinfo=UTC)

    by_request = lines(audit_path(app))[-1]["time"]
    by_cli = activity.admin_event(moment, "cli", "enable local sign-in")["time"]

    assert by_cli == "2026-12-08T03:57:16.272+00:00"
    assert len(by_cli) == len(by_request)


def test_refused_and_failed_requests_become_events_with_their_reason(
    app: Flask, client, scim: ScimClient
) -> None:
    client.get("/scim/v2/Users", headers={"Authorization": "Bearer pw_not-a-token"})
    scim.post("/Users", {"userName": "ann"})
    scim.post("/Users", {"userName": "ANN"})  # 409 uniqueness
    events = lines(audit_path(app))
    refused = [event for event in events if event.get("operation") == "refused"]
    failed = [event for event in events if event.get("operation") == "failed"]
    assert [(event["status"], event["reason"]) for event in refused] == [(401, "unknown-token")]
    assert [event["status"] for event in failed] == [409]
    assert "already used" in failed[0]["detail"]


def test_nothing_secret_is_written_anywhere_in_the_data_directory(
    app: Flask, client, scim: ScimClient, caplog: pytest.LogCaptureFixture
) -> None:
    """The bearer tokens, a user's password and the admin's password never reach a file or log."""
    panel = signed_in(app)
    panel_token = panel.create_token("second")
    scim.post("/Users", {"userName": "ann", "password": "Sup3r-Secret-Pa55"})
    client.get("/scim/v2/Users", headers={"Authorization": f"Bearer {panel_token}x"})
    panel.submit(
        "/admin/settings/tokens/revoke?name=second",
        "/admin/settings/tokens/revoke",
        {"name": "second"},
    )
    client.get("/scim/v2/Users", headers={"Authorization": f"Bearer {panel_token}"})
    app.extensions["proware.admin"].close()

    written = all_data_bytes(app) + caplog.text.encode()
    assert audit_path(app).exists()
    for secret in (scim.token, panel_token, "Sup3r-Secret-Pa55", PASSWORD):
        assert secret.encode() not in written, secret


def test_control_panel_actions_are_audited_with_the_admin(app: Flask) -> None:
    panel = signed_in(app)
    panel.submit("/admin/settings", "/admin/settings/provisioning", {"enabled": "1"})
    panel.create_token("entra")
    operations = [(e["operation"], e.get("admin"), e.get("token")) for e in lines(audit_path(app))]
    assert operations == [
        ("sign in", "alice", None),
        ("enable provisioning", "alice", None),
        ("create token", "alice", "entra"),
    ]


class _HookedRepository(MemoryRepository):
    """A memory store that records compaction hooks and holds events like a journal."""

    def __init__(self) -> None:
        super().__init__(INDEXES)
        self.hooks: list[CompactionHook] = []
        self.journal_events = [{"seq": 1, "operation": "create", "name": "from the journal"}]

    def add_compaction_hook(self, hook: CompactionHook) -> None:
        self.hooks.append(hook)

    def recent_events(self, after_seq: int = 0) -> list[dict]:
        return [event for event in self.journal_events if event["seq"] > after_seq]


def test_the_audit_log_syncs_in_the_stores_compaction_hook_and_catches_up_at_start(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    repository = _HookedRepository()
    app = create_app(settings, repository=repository)
    log = app.extensions["proware.admin"].audit
    assert repository.hooks == [log.sync]
    assert [event["name"] for event in log.newest_first()] == ["from the journal"]

    calls: list[int] = []
    monkeypatch.setattr(audit.os, "fsync", calls.append)
    for hook in repository.hooks:
        hook()
    assert len(calls) == 1  # the directory entry was synced when catch-up created the file

    again = create_app(settings, repository=repository)  # a restart: nothing new to catch up
    assert len(list(again.extensions["proware.admin"].audit.newest_first())) == 1


def test_reading_only_events_containing_a_text_skips_the_others_newest_first(
    tmp_path: Path,
) -> None:
    """A detail page's events, or a filter's, are picked out of the lines before decoding:
    the kept ones, across rotated files, newest first; every string given must be there."""
    log = AuditLog(tmp_path / "activity.jsonl", max_bytes=1024, backups=3)
    for number in range(40):
        log.append({"n": number, "id": f"user-{number % 3}", "operation": "update"})
    log.append({"n": 40, "id": "user-1", "operation": "delete"})
    log.close()
    assert len(audit.log_files(tmp_path / "activity.jsonl", 3)) > 1
    one = [event["n"] for event in log.newest_first(['"user-1"'])]
    assert one == [40, *range(37, 0, -3)]
    both = [event["n"] for event in log.newest_first(['"update"', '"user-1"'])]
    assert both == list(range(37, 0, -3))
    assert list(log.newest_first(['"user-7"'])) == []


def test_the_events_about_one_resource_are_those_with_its_id(tmp_path: Path) -> None:
    """As the PostgreSQL log selects them: an id only mentioned (a name, a detail) is not
    the event's resource; an id JSON escapes is still found."""
    log = AuditLog(tmp_path / "activity.jsonl")
    for number, (id, name) in enumerate(
        [("u1", "ann"), ("u2", "u1"), ("u1", "bob"), ('q"1', "x"), ("é1", "y")]
    ):
        log.append({"n": number, "id": id, "name": name, "detail": f'"id":"{name}"'})
    log.close()

    assert [event["n"] for event in log.newest_first(about="u1")] == [2, 0]
    assert [event["n"] for event in log.newest_first(about='q"1')] == [3]
    assert [event["n"] for event in log.newest_first(about="é1")] == [4]
    assert list(log.newest_first(about="u3")) == []


def test_the_newest_events_can_be_left_out(tmp_path: Path) -> None:
    """As the PostgreSQL log leaves them unread: an unreadable line is no event."""
    log = AuditLog(tmp_path / "activity.jsonl", max_bytes=1024, backups=5)
    for number in range(8):
        log.append(
            {"n": number, "operation": "delete" if number % 2 else "create", "pad": "x" * 300}
        )
    log.close()
    with (tmp_path / "activity.jsonl").open("ab") as file:
        file.write(b"{not json\n")

    assert [event["n"] for event in log.newest_first(skip=3)] == [4, 3, 2, 1, 0]
    assert [event["n"] for event in log.newest_first(['"delete"'], skip=1)] == [5, 3, 1]
    assert list(log.newest_first(skip=10**30)) == []


def test_a_line_the_standard_library_reads_and_orjson_refuses_is_still_read(
    tmp_path: Path,
) -> None:
    path = tmp_path / "activity.jsonl"
    path.write_bytes(b'{"n":1,"name":"\\ud800"}\n{"n":2}\n')
    assert [event["n"] for event in audit.read_newest_first(path)] == [2, 1]


def test_reading_events_pre_selected_by_a_test_of_their_lines(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "activity.jsonl")
    for number in range(6):
        log.append({"n": number, "name": "odd" if number % 2 else "even"})

    def odd_lines(data: bytes) -> set[int]:
        return {audit.line_start(data, at.start()) for at in re.finditer(b"odd", data)}

    picked = [event["n"] for event in log.newest_first(preselect=odd_lines)]
    assert picked == [5, 3, 1]
    both = log.newest_first(['"n":3'], preselect=odd_lines)
    assert [event["n"] for event in both] == [3]


_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 100_000),
    st.sampled_from([399, 400, 401, 403, 500, 999, 1000, 65536, 400.0, 1e3, "500", "failed"]),
    st.floats(0, 2_000, allow_nan=False),
    st.sampled_from(["", "401", "refused", "failed", "Ann", "ANN", "\u212aate", "ſtraße", "a b"]),
    st.text(max_size=8),
)
_events = st.fixed_dictionaries(
    {},
    optional={
        key: _values for key in ("status", "reason", "operation", "name", "detail", "id", "client")
    },
)


@given(event=_events, outcome=st.sampled_from(["refused", "failed"]))
@settings(max_examples=500, deadline=None, database=None)
def test_an_outcomes_pre_selection_passes_every_event_of_that_outcome(
    event: dict, outcome: str
) -> None:
    """The activity page skips lines its filter's pre-selection rejects without decoding
    them: it may let through more than the filter matches, never less."""
    _assert_pre_selected(event, ActivityFilter(outcome=outcome))


@given(event=_events, text=st.sampled_from(["ann", "KATE", "strasse", "40", "a b", "fail", 'x"y']))
@settings(max_examples=500, deadline=None, database=None)
def test_a_texts_pre_selection_passes_every_event_it_matches(event: dict, text: str) -> None:
    _assert_pre_selected(event, ActivityFilter(text=text))


def _assert_pre_selected(event: dict, wanted: ActivityFilter) -> None:
    preselect = wanted.preselect()
    if wanted.matches(event) and preselect is not None:
        text = b'{"other":1}\n' + audit.encode(event) + b'{"other":2}\n'
        assert preselect(text) == {len(b'{"other":1}\n')}


@given(event=_events, operation=st.sampled_from([None, "sign-in refused", "sign in", "create"]))
@settings(max_examples=500, deadline=None, database=None)
def test_the_summarys_pre_selection_passes_every_event_it_counts(
    event: dict, operation: str | None
) -> None:
    if operation is not None:
        event = {**event, "operation": operation, "source": "password"}
    counted = (
        event.get("operation") == "sign-in refused"
        if activity.from_control_panel(event)
        else activity.outcome(event) != "success"
    )
    text = b'{"other":1}\n' + audit.encode(event)
    if counted:
        assert activity.refusals_and_failures(text) == {len(b'{"other":1}\n')}
