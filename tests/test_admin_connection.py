"""Connection status: Test Connection recognised, refusals with reasons, repeats counted."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from admin.connection import REASONS, ConnectionStatus, Observation, is_probe
from storage.controlfile import ControlFile
from storage.errors import PermissionDenied
from tests.admin_support import data_dir_of
from tests.conftest import ScimClient
from tests.storage_contract import FixedClock

GUID = "7d420df3-9995-4831-a406-ecf8166f5f6a"
# Entra's Test Connection, as captured on the wire (entra-provisioning.md A1).
PROBE = f"/scim/v2/Users?filter=userName+eq+%22{GUID}%22"


def status_of(app: Flask, name: str | None):
    for status in app.extensions["proware.admin"].connection.tokens():
        if status.name == name:
            return status
    raise AssertionError(f"no connection status for {name!r}")


def observation(**fields: object) -> Observation:
    values: dict = {
        "time": "2026-11-26T10:54:52.123+00:00",
        "client": "40.126.25.32",
        "token": "entra",
        "method": "GET",
        "path": "/scim/v2/Users",
        "query": "",
        "filter": None,
        "status": 200,
    }
    values.update(fields)
    # The token's id, as the SCIM layer gives it (None with the token).
    values.setdefault("token_id", f"{values['token']}-id" if values["token"] else None)
    return Observation(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("method", "path", "filter_text", "expected"),
    [
        pytest.param("GET", "/scim/v2/Users", f'userName eq "{GUID}"', True, id="entra-user"),
        pytest.param("GET", "/scim/v2/Users", f'USERNAME EQ "{GUID.upper()}"', True, id="case"),
        pytest.param("GET", "/scim/v2/Groups", f'displayName eq "{GUID}"', True, id="entra-group"),
        pytest.param("GET", "/scim/v2/Users", 'userName eq "ann@example.com"', False, id="user"),
        pytest.param("GET", "/scim/v2/Users", f'externalId eq "{GUID}"', False, id="externalId"),
        pytest.param("GET", "/scim/v2/Users", None, False, id="no-filter"),
        pytest.param("POST", "/scim/v2/Users", f'userName eq "{GUID}"', False, id="post"),
    ],
)
def test_the_probe_is_a_get_matching_a_fresh_guid(
    method: str, path: str, filter_text: str | None, expected: bool
) -> None:
    assert is_probe(method, path, filter_text) is expected


def test_entra_test_connection_is_recognised_when_it_matches_nothing(
    app: Flask, client: FlaskClient, scim: ScimClient
) -> None:
    response = client.get(PROBE, headers={"Authorization": f"Bearer {scim.token}"})
    assert response.status_code == 200
    status = status_of(app, "entra")
    assert status.last_probe is not None
    assert status.last_probe.status == 200
    assert status.last_probe.result == "Test Connection probe: no match, as Entra expects"
    assert status.recent[0].probe and status.recent[0].client == "127.0.0.1"


def test_a_refused_probe_says_so(app: Flask, client: FlaskClient) -> None:
    client.get(PROBE)
    status = status_of(app, None)
    assert status.recent[0].result == "Test Connection probe refused: No Authorization header"


def test_a_token_in_the_query_string_is_not_kept(
    app: Flask, client: FlaskClient, token: str
) -> None:
    """A client that sends its token as RFC 6750's ``access_token`` parameter is refused (no
    header), and the real token it sent is neither kept nor shown: the Connection status
    lists the request with the value redacted, as the access log does."""
    client.get(f"/scim/v2/Users?access_token={token}&count=2")

    [row] = status_of(app, None).recent
    assert row.target == "/scim/v2/Users?access_token=[redacted]&count=2"
    assert token not in repr(app.extensions["proware.admin"].connection.tokens())


def test_ordinary_requests_are_listed_newest_first_with_their_result(
    app: Flask, scim: ScimClient
) -> None:
    scim.post("/Users", {"userName": "ann"})
    scim.get("/Users?filter=userName+eq+%22ann%22")
    scim.get("/Users/nope")
    results = [(row.method, row.status, row.result) for row in status_of(app, "entra").recent]
    assert results == [
        ("GET", 404, "User 'nope' not found"),
        ("GET", 200, "1 matched"),
        ("POST", 201, "created"),
    ]


def test_what_a_patch_skipped_is_shown_with_its_result(app: Flask, scim: ScimClient) -> None:
    """Entra Q22/Q23: unknown attributes and member ids are skipped, not refused; the admin
    sees them next to the request rather than only in the server log."""
    user = scim.post("/Users", {"userName": "ann"}).get_json()
    group = scim.post("/Groups", {"displayName": "Staff"}).get_json()
    scim.patch_ops(f"/Users/{user['id']}", {"op": "add", "path": "shoeSize", "value": "9"})
    scim.patch_ops(
        f"/Groups/{group['id']}",
        {"op": "add", "path": "members", "value": [{"value": user["id"]}, {"value": "gone"}]},
    )

    results = [row.result for row in status_of(app, "entra").recent[:2]]

    assert results == [
        "updated; skipped member ids that name no user: gone",
        "updated; skipped unknown attributes: shoeSize",
    ]


def _expire(app: Flask, name: str) -> None:
    """Move the token's expiry into the past, as the passing of time would."""
    data_dir = data_dir_of(app)

    def backdate(document: dict) -> None:
        for record in document["tokens"]:
            if record["name"] == name:
                record["expires"] = "2000-01-01T00:00:00Z"

    ControlFile(data_dir / "control.json").update(backdate)


@pytest.mark.parametrize(
    ("setup", "headers", "token", "reason", "status"),
    [
        pytest.param(None, {}, None, "no-header", 401, id="no-header"),
        pytest.param(
            None, {"Authorization": "Basic dXNlcg=="}, None, "not-bearer", 401, id="basic"
        ),
        pytest.param(
            None,
            {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln"},
            None,
            "jwt",
            401,
            id="entra-jwt",
        ),
        pytest.param(
            None, {"Authorization": "Bearer pw_unknown"}, None, "unknown-token", 401, id="unknown"
        ),
        pytest.param("revoke", "secret", "entra", "revoked-token", 401, id="revoked"),
        pytest.param("expire", "secret", "entra", "expired-token", 401, id="expired"),
        pytest.param("disable", "secret", "entra", "provisioning-disabled", 403, id="disabled"),
        pytest.param("read-only", "secret", "reader", "read-only-token", 403, id="read-only"),
    ],
)
def test_every_refusal_is_kept_with_its_reason_and_what_to_fix(
    app: Flask,
    client: FlaskClient,
    setup: str | None,
    headers: dict | str,
    token: str | None,
    reason: str,
    status: int,
) -> None:
    services = app.extensions["proware"]
    services.switch.set(True)
    secret, _ = services.tokens.create(
        "reader" if setup == "read-only" else "entra",
        read_only=setup == "read-only",
        expires_in_days=1 if setup == "expire" else None,
    )
    if setup == "revoke":
        services.tokens.revoke("entra")
    elif setup == "expire":
        _expire(app, "entra")
    elif setup == "disable":
        services.switch.set(False)
    if headers == "secret":
        headers = {"Authorization": f"Bearer {secret}"}
    response = client.post("/scim/v2/Users", json={"userName": "ann"}, headers=headers)
    assert response.status_code == status
    refusal = status_of(app, token).refusals[0]
    assert (refusal.reason, refusal.status, refusal.count) == (reason, status, 1)
    assert refusal.label == REASONS[reason].label
    assert refusal.fix == REASONS[reason].fix
    assert refusal.detail == response.get_json()["detail"]


def test_repeated_identical_refusals_are_counted_not_stored_one_by_one(
    app: Flask, client: FlaskClient
) -> None:
    for _ in range(50):
        client.get("/scim/v2/Users", headers={"Authorization": "Bearer pw_old"})
    client.get("/scim/v2/Users")
    status = status_of(app, None)
    assert [(r.reason, r.count) for r in status.refusals] == [
        ("no-header", 1),
        ("unknown-token", 50),
    ]
    assert [(row.result, row.count) for row in status.recent] == [
        ("Refused: No Authorization header", 1),
        ("Refused: Unknown token", 50),
    ]


def test_history_is_bounded_per_token() -> None:
    clock = FixedClock()
    status = ConnectionStatus(None, clock=clock, recent=3, refusals=2)
    for number in range(10):
        status.record(observation(path=f"/scim/v2/Users/{number}", status=404, detail="gone"))
        status.record(
            observation(client=f"10.0.0.{number}", status=401, reason="unknown-token", token=None)
        )
    entra, anonymous = status.tokens()
    assert [row.target for row in entra.recent] == [
        "/scim/v2/Users/9",
        "/scim/v2/Users/8",
        "/scim/v2/Users/7",
    ]
    assert [refusal.client for refusal in anonymous.refusals] == ["10.0.0.9", "10.0.0.8"]


def test_the_status_survives_a_restart(tmp_path: Path) -> None:
    clock = FixedClock()
    path = tmp_path / "connection-status.json"
    first = ConnectionStatus(path, clock=clock)
    first.record(observation(filter=f'userName eq "{GUID}"', matched=0))
    first.record(observation(status=401, reason="revoked-token", detail="revoked"))
    first.save()
    again = ConnectionStatus(path, clock=clock)
    assert again.tokens() == first.tokens()


def test_saving_happens_at_most_once_a_minute(tmp_path: Path) -> None:
    clock = FixedClock()
    path = tmp_path / "connection-status.json"
    status = ConnectionStatus(path, clock=clock)
    status.record(observation())
    status.wait_for_save()  # saves run on a thread of their own
    saved = path.read_bytes()
    status.record(observation(status=404, detail="x"))
    status.wait_for_save()
    assert path.read_bytes() == saved
    clock.advance(minutes=1)
    status.record(observation(status=500, detail="y"))
    status.wait_for_save()
    assert path.read_bytes() != saved


class ManualTimers:
    """Timers that fire when the test says so (the status's save timer's fake)."""

    def __init__(self) -> None:
        self.scheduled: list[tuple[float, Callable[[], None]]] = []

    def start(self, delay: float, call: Callable[[], None]) -> ManualTimers:
        self.scheduled.append((delay, call))
        return self

    def cancel(self) -> None:
        self.scheduled.clear()


def _two_processes_one_saved_request(
    tmp_path: Path,
) -> tuple[FixedClock, ManualTimers, ConnectionStatus, ConnectionStatus]:
    """A process answering SCIM requests (its first saved at once, as the first is) and one
    showing the page, over one document; the answering one's timers fire when told."""
    clock = FixedClock()
    path = tmp_path / "connection-status.json"
    timers = ManualTimers()
    answering = ConnectionStatus(path, clock=clock, timer=timers.start)
    showing = ConnectionStatus(path, clock=FixedClock())
    answering.record(observation(path="/scim/v2/Users/1"))
    answering.wait_for_save()
    return clock, timers, answering, showing


def test_a_request_in_the_minute_after_a_save_is_saved_when_it_is_up(tmp_path: Path) -> None:
    """With no request after it: a request answered by one server process showed on the
    page another process served only after the first one's next request a minute later
    (Entra's next cycle may come 40 minutes later)."""
    clock, timers, answering, showing = _two_processes_one_saved_request(tmp_path)
    answering.record(observation(path="/scim/v2/Users/2", status=404, detail="gone"))
    answering.wait_for_save()
    assert len(showing.synced().tokens()[0].recent) == 1
    ((delay, save),) = timers.scheduled

    clock.advance(minutes=1)
    save()
    answering.wait_for_save()

    assert delay == 60.0
    assert len(showing.synced().tokens()[0].recent) == 2


def test_a_test_connection_probe_is_shown_by_the_other_processes_within_a_second(
    tmp_path: Path,
) -> None:
    """Entra's Test Connection answered by one process, in the minute after its last save:
    the page another process served said "no probe seen yet" for that minute (60 s measured
    behind nginx) while Entra reported success. More probes within the second wait for it."""
    clock, timers, answering, showing = _two_processes_one_saved_request(tmp_path)

    answering.record(observation(filter=f'userName eq "{GUID}"', matched=0))
    answering.wait_for_save()

    assert showing.synced().tokens()[0].last_probe is not None
    probe = observation(filter=f'userName eq "{GUID}"', matched=0, client="10.0.0.7")
    answering.record(probe)
    answering.wait_for_save()
    assert showing.synced().tokens()[0].last_probe.client != "10.0.0.7"
    assert sorted(delay for delay, _ in timers.scheduled) == [1.0, 60.0]


def test_what_is_not_saved_yet_is_saved_when_the_server_process_stops(tmp_path: Path) -> None:
    """A worker of ``serve --processes`` leaves without atexit hooks: its stop saves."""
    path = tmp_path / "connection-status.json"
    timers = ManualTimers()
    status = ConnectionStatus(path, clock=FixedClock(), timer=timers.start)
    status.record(observation(path="/scim/v2/Users/1"))
    status.record(observation(path="/scim/v2/Users/2"))  # due in a minute

    status.flush()

    assert timers.scheduled == []
    saved = ConnectionStatus(path, clock=FixedClock()).tokens()[0].recent
    assert [row.target for row in saved] == ["/scim/v2/Users/2", "/scim/v2/Users/1"]


def test_an_unreadable_status_file_starts_afresh(tmp_path: Path) -> None:
    path = tmp_path / "connection-status.json"
    path.write_text("{not json")
    assert ConnectionStatus(path, clock=FixedClock()).tokens() == []


def test_two_processes_see_each_others_requests_once_merged(tmp_path: Path) -> None:
    """Each server process records its own requests and saves them at most once a minute;
    the page merges what all saved."""
    path = tmp_path / "connection-status.json"
    first = ConnectionStatus(path, clock=FixedClock())
    second = ConnectionStatus(path, clock=FixedClock())
    first.record(observation(path="/scim/v2/Users/1", time="2026-11-26T10:00:00+00:00"))
    second.record(observation(path="/scim/v2/Users/2", time="2026-11-26T10:00:01+00:00"))
    for _ in range(3):  # one request repeated: one row, counted
        second.record(observation(path="/scim/v2/Groups", time="2026-11-26T10:00:02+00:00"))

    second.synced()  # its minute is up, or the server stops
    seen = [row.target for row in first.synced().tokens()[0].recent]
    again = [row.target for row in second.synced().tokens()[0].recent]

    assert seen == ["/scim/v2/Groups", "/scim/v2/Users/2", "/scim/v2/Users/1"]
    assert again == seen
    assert second.tokens()[0].recent[0].count == 3


def test_refusals_seen_by_several_processes_are_counted_once_each(tmp_path: Path) -> None:
    path = tmp_path / "connection-status.json"
    first = ConnectionStatus(path, clock=FixedClock())
    second = ConnectionStatus(path, clock=FixedClock())
    refused = observation(token=None, status=401, reason="unknown-token", detail="no such token")
    first.record(refused)
    first.synced()
    second.synced()
    second.record(replace(refused, time="2026-11-26T10:55:00+00:00"))

    refusals = second.synced().tokens()[0].refusals

    assert [(r.reason, r.count) for r in refusals] == [("unknown-token", 2)]


def test_refusals_and_requests_of_one_millisecond_keep_their_order_once_saved(
    tmp_path: Path,
) -> None:
    """Times are kept to the millisecond: a save's merge sorted two refusals of the same
    millisecond by time alone and put the earlier one first (seen in the server's tests)."""
    status = ConnectionStatus(tmp_path / "connection-status.json", clock=FixedClock())
    refused = observation(token=None, status=400, detail="Bad Request: Invalid chunk size")
    status.record(replace(refused, reason="no-header", path="/scim/v2/Groups/1"))
    status.save()  # the first request saves at once: the file holds the first refusal
    status.record(replace(refused, reason="no-header", path="/scim/v2/Groups/1"))
    status.record(replace(refused, reason="unknown-token", path="/scim/v2/Groups/2"))

    [merged] = status.synced().tokens()

    assert [r.reason for r in merged.refusals] == ["unknown-token", "no-header"]
    assert [row.target for row in merged.recent] == ["/scim/v2/Groups/2", "/scim/v2/Groups/1"]


def test_a_token_entry_saved_without_its_id_is_not_given_to_a_token_of_that_name(
    tmp_path: Path,
) -> None:
    """Saved before entries carried the token's id: it may be a revoked namesake's."""
    path = tmp_path / "connection-status.json"
    first = ConnectionStatus(path, clock=FixedClock())
    first.record(observation())
    first.record(observation(token=None, status=401, reason="unknown-token"))
    first.save()
    saved = ControlFile(path)
    saved.update(lambda document: document["tokens"][0].pop("token_id"))

    assert [status.name for status in ConnectionStatus(path, clock=FixedClock()).tokens()] == [None]


def test_the_newer_of_two_probes_of_one_millisecond_stays_the_last_once_saved(
    tmp_path: Path,
) -> None:
    """Entra's Test Connection run twice within a millisecond (a retry): the save's merge
    picked the probe with the later time and, on a tie, the saved one."""
    status = ConnectionStatus(tmp_path / "connection-status.json", clock=FixedClock())
    probe = observation(filter=f'userName eq "{GUID}"', path="/scim/v2/Users")
    status.record(replace(probe, status=401, reason="revoked-token", detail="revoked"))
    status.save()
    status.record(replace(probe, matched=0))

    [merged] = status.synced().tokens()

    assert merged.last_probe is not None
    assert merged.last_probe.status == 200
    assert merged.last_probe == merged.recent[0]


def test_a_request_repeated_within_its_millisecond_after_a_save_is_counted_once_merged(
    tmp_path: Path,
) -> None:
    status = ConnectionStatus(tmp_path / "connection-status.json", clock=FixedClock())
    refused = observation(token=None, status=401, reason="unknown-token", detail="no such token")
    for _ in range(2):
        status.record(observation(path="/scim/v2/Groups"))
        status.record(refused)
        status.save()  # the second save merges a row and a refusal of the saved millisecond

    [entra, anonymous] = status.synced().tokens()

    assert [(row.target, row.count) for row in entra.recent] == [("/scim/v2/Groups", 2)]
    assert [(r.reason, r.count) for r in anonymous.refusals] == [("unknown-token", 2)]


def _left_roots(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Every ControlFile named ``name`` may not be opened: as one a command run as root
    (without ``sudo -u proware``) wrote, for the service's user (the tests run as root)."""
    real_load = ControlFile._load

    def load(self: ControlFile):
        if self.path.name == name:
            raise PermissionDenied(self.path, PermissionError(13, "Permission denied"))
        return real_load(self)

    monkeypatch.setattr(ControlFile, "_load", load)


def test_a_connection_status_file_left_roots_is_one_log_line_per_failure_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Each view of the settings page and each save logged a traceback (README, "Running as
    a systemd service": one line naming the file)."""
    path = tmp_path / "connection-status.json"
    status = ConnectionStatus(path, clock=FixedClock())
    _left_roots(monkeypatch, path.name)
    status.record(observation())
    status.wait_for_save()

    status.synced()
    status.flush()

    failures = [r for r in caplog.records if "connection status" in r.getMessage()]
    assert [r.getMessage().split(":")[0] for r in failures] == [
        "could not save the connection status",
        "could not merge the connection status",
        "could not save the connection status",
    ]
    assert all(r.exc_info is None and str(path) in r.getMessage() for r in failures)
    assert status.tokens()[0].recent  # the server's own view is still shown


def test_closing_the_control_panel_with_its_connection_status_left_roots_logs_and_returns(
    app: Flask, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """At interpreter exit: the error escaped, and Python printed "Exception ignored in
    atexit callback" with the whole context's repr and a traceback to the journal."""
    context = app.extensions["proware.admin"]
    _left_roots(monkeypatch, "connection-status.json")
    context.connection.record(observation())
    context.connection.wait_for_save()

    context.close()

    [line] = {r.getMessage() for r in caplog.records if "connection status" in r.getMessage()}
    assert line.startswith("could not save the connection status: cannot open ")
