"""The real server end to end: ``python app.py serve`` (waitress) as a subprocess, over HTTP.

Entra's whole sequence from tests/exchanges/entra-lifecycle is replayed with http.client on
one keep-alive connection; the proxy settings are checked with the headers a TLS-terminating
reverse proxy adds. Every server is started on a free port on 127.0.0.1, waited for with a
timeout and killed in teardown, whatever the test did.
"""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.replay import HttpTransport, Replay, Reply, assert_played, load_scenarios
from tests.serverproc import ServerProcess

START_TIMEOUT = 20  # seconds for interpreter start-up, imports and /healthz
STOP_TIMEOUT = 10  # seconds for a polite stop before the process counts as hung
HOST = "127.0.0.1"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "proware.example.com"}


@dataclass
class ConfiguredServer(ServerProcess):
    """A :class:`ServerProcess` whose ``[server]`` table also gets ``server_options``."""

    server_options: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        extra = "".join(
            f"{key} = {json.dumps(value)}\n" for key, value in self.server_options.items()
        )
        config = self.config_path.read_text(encoding="utf-8")
        self.config_path.write_text(config.replace("[server]\n", "[server]\n" + extra, 1))


@dataclass
class Running:
    """A started server: the process, its bearer token, and what it printed at start."""

    server: ConfiguredServer
    token: str
    banner: str

    def transport(self) -> HttpTransport:
        """A new keep-alive connection to this server."""
        return HttpTransport(HOST, self.server.port)


def _start(root: Path, **server_options: str) -> Running:
    """Start a server before any token exists (a first install, so the banner shows the
    token-create hint), then create the token and enable provisioning with the CLI."""
    server = ConfiguredServer(root, server_options=server_options)
    try:
        server.start(timeout=START_TIMEOUT)
        banner = server.log_path.read_text(encoding="utf-8")
        token = server.create_token("entra")
        server.enable_provisioning()
    except BaseException:
        server.kill()
        raise
    return Running(server, token, banner)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """One server with the default [server] settings, shared by the tests that only read or
    add groups (the lifecycle counts users, so nothing else creates one here)."""
    running = _start(tmp_path_factory.mktemp("plain"))
    yield running
    running.server.kill()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    """Start a server of its own with these ``[server]`` options; killed at teardown."""
    started: list[Running] = []

    def start(**server_options: str) -> Running:
        started.append(_start(tmp_path / f"server{len(started)}", **server_options))
        return started[-1]

    yield start
    for running in started:
        running.server.kill()


def _send(running: Running, method: str, path: str, body: object, headers: dict[str, str]) -> Reply:
    """One request on a connection of its own, with the bearer token and Entra's media type."""
    transport = running.transport()
    try:
        return transport.send(
            method,
            path,
            {
                "Authorization": f"Bearer {running.token}",
                "Content-Type": "application/scim+json; charset=utf-8",
                **headers,
            },
            None if body is None else json.dumps(body).encode(),
        )
    finally:
        transport.close()


def _create(running: Running, endpoint: str, body: dict, headers: dict[str, str]) -> dict:
    """POST a resource; returns its body with the Location header added as "location"."""
    reply = _send(running, "POST", endpoint, body, headers)
    assert reply.status == 201, reply.body
    created = reply.json()
    assert isinstance(created, dict)
    return {"location": reply.headers["location"], **created}


def _user(user_name: str) -> dict:
    return {"schemas": [USER_SCHEMA], "userName": user_name}


def test_entra_lifecycle_over_real_http_keeps_the_connection_alive(plain: Running) -> None:
    """Test Connection, match, create, both PATCH dialects, disable, re-enable, groups and
    members, discovery, paging and delete over http.client: every exchange answered as
    recorded, all on ONE keep-alive connection.

    The 204s of group PATCH and DELETE included: waitress alone closes the connection after
    any response without a Content-Length, which a 204 never has (server/httpserver.py).
    """
    transport = plain.transport()
    statuses = []
    try:
        for played in Replay(transport, plain.token).run(load_scenarios()["entra-lifecycle"]):
            assert_played(played)
            assert played.reply is not None
            statuses.append(played.reply.status)
            assert "connection" not in played.reply.headers, played.reply.headers
    finally:
        transport.close()
    assert 204 in statuses[:-1]
    assert transport.connections == 1


def test_a_304_keeps_the_connection_alive_and_close_is_honoured(plain: Running) -> None:
    """If-None-Match with the current ETag: 304 on the same connection, which stays open;
    a request that says ``Connection: close`` still gets its connection closed."""
    group = _create(plain, "/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "Etag 304"}, {})
    transport = plain.transport()
    auth = {"Authorization": f"Bearer {plain.token}"}
    path = f"/Groups/{group['id']}?excludedAttributes=members"
    try:
        first = transport.send("GET", path, auth, None)
        etag = first.headers["etag"]
        unchanged = transport.send("GET", path, {**auth, "If-None-Match": etag}, None)
        again = transport.send("GET", path, auth, None)
        closing = transport.send(
            "GET", path, {**auth, "If-None-Match": etag, "Connection": "close"}, None
        )
    finally:
        transport.close()
    assert unchanged.status == 304 and unchanged.body == b""
    assert "connection" not in unchanged.headers
    assert again.status == 200
    assert transport.connections == 1
    assert closing.status == 304 and closing.headers.get("connection") == "close"


def test_server_prints_the_tenant_url_and_the_token_command_at_start(plain: Running) -> None:
    """The operator learns what to paste into Entra and how to get a Secret Token."""
    port, config = plain.server.port, re.escape(str(plain.server.config_path))
    assert re.search(rf"Tenant URL:\s+http://127\.0\.0\.1:{port}/scim/v2\s*$", plain.banner, re.M)
    assert re.search(rf"app\.py --config {config} token create --name entra", plain.banner)


def test_forwarded_headers_are_ignored_without_trusted_proxy(plain: Running) -> None:
    """Anyone can send X-Forwarded-*: without trusted_proxy they must not change our URLs."""
    body = {"schemas": [GROUP_SCHEMA], "displayName": "Forwarded Headers Ignored"}
    group = _create(plain, "/Groups", body, FORWARDED)
    expected = f"http://127.0.0.1:{plain.server.port}/scim/v2/Groups/{group['id']}"
    assert (group["meta"]["location"], group["location"]) == (expected, expected)


def test_trusted_proxy_forwarded_headers_make_the_location_public(
    start_server: Callable[..., Running],
) -> None:
    """Behind a trusted TLS proxy, meta.location and Location use the client's scheme and host."""
    running = start_server(trusted_proxy=HOST)
    user = _create(running, "/Users", _user("proxied@contoso.com"), FORWARDED)
    expected = f"https://proware.example.com/scim/v2/Users/{user['id']}"
    assert (user["meta"]["location"], user["location"]) == (expected, expected)


def test_ngrok_s_forwarding_with_trusted_proxy_gives_public_urls_and_the_client_address(
    start_server: Callable[..., Running],
) -> None:
    """ngrok's agent (README, "Test Connection through ngrok") keeps the public Host and adds
    only X-Forwarded-For and X-Forwarded-Proto, no X-Forwarded-Host: URLs still use the public
    host over https, and Provisioning activity names Entra's address, not the agent's 127.0.0.1."""
    running = start_server(trusted_proxy=HOST)
    ngrok = {
        "Host": "abcd-203-0-113-9.ngrok-free.app",
        "X-Forwarded-For": "40.126.25.32",
        "X-Forwarded-Proto": "https",
    }
    user = _create(running, "/Users", _user("through.ngrok@contoso.com"), ngrok)
    expected = f"https://abcd-203-0-113-9.ngrok-free.app/scim/v2/Users/{user['id']}"
    assert (user["meta"]["location"], user["location"]) == (expected, expected)
    activity = running.server.cli("activity", "tail", "-n", "1")
    assert "create  User through.ngrok@contoso.com" in activity
    assert "client=40.126.25.32" in activity, activity


def test_public_url_overrides_forwarded_headers_and_the_request(
    start_server: Callable[..., Running],
) -> None:
    """With [server] public_url set, it is the base of every URL, even behind a trusted proxy,
    and the banner's Tenant URL."""
    running = start_server(trusted_proxy=HOST, public_url="https://scim.proware.example.net")
    user = _create(running, "/Users", _user("public.url@contoso.com"), FORWARDED)
    expected = f"https://scim.proware.example.net/scim/v2/Users/{user['id']}"
    assert (user["meta"]["location"], user["location"]) == (expected, expected)
    tenant_url = r"Tenant URL:\s+https://scim\.proware\.example\.net/scim/v2\s*$"
    assert re.search(tenant_url, running.banner, re.M)


@dataclass
class Terminated:
    """A server that was sent SIGTERM after creating a user, and how it ended."""

    running: Running
    user: dict
    exit_code: int | None
    log: str


@pytest.fixture(scope="module")
def terminated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Terminated]:
    """SIGTERM (systemd's and docker's stop signal) to a server that holds one user."""
    running = _start(tmp_path_factory.mktemp("sigterm"))
    try:
        user = _create(running, "/Users", _user("survivor@contoso.com"), {})
        process = running.server.process
        assert process is not None
        process.send_signal(signal.SIGTERM)
        try:
            code: int | None = process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            code = None
        log = running.server.log_path.read_text(encoding="utf-8")
        yield Terminated(running, user, code, log)
    finally:
        running.server.kill()


def test_sigterm_stops_the_server_and_a_restart_keeps_the_data(terminated: Terminated) -> None:
    """The process ends within the timeout; started again on the same data, the user is there."""
    assert terminated.exit_code is not None, f"the server ignored SIGTERM for {STOP_TIMEOUT} s"
    server = terminated.running.server
    server.start(timeout=START_TIMEOUT)
    reply = _send(terminated.running, "GET", f"/Users/{terminated.user['id']}", None, {})
    assert reply.status == 200
    assert reply.json()["userName"] == "survivor@contoso.com"  # type: ignore[index]


def test_sigterm_exits_with_code_0_after_closing_the_store(terminated: Terminated) -> None:
    """A clean stop: waitress stops serving, the store is closed, the exit code is 0."""
    assert "Traceback" not in terminated.log
    assert terminated.exit_code == 0, terminated.log[-2000:]


# -- bodies over [server] max_body_bytes: refused by waitress, answered as SCIM errors -------

LIMIT = 1_048_576  # [server] max_body_bytes by default


def _raw_exchange(running: Running, head: str, body: list[bytes] = ()) -> tuple[int, dict, bytes]:
    """Send a request's head and body pieces on a socket of its own, as far as the server
    reads them, and read the answer up to the connection's close.

    The server answers a refused body before reading it and closes; a piece it no longer
    reads is simply not sent.
    """
    with socket.create_connection((HOST, running.server.port), timeout=10) as sock:
        sock.sendall(head.encode("latin-1"))
        for piece in body:
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
        response = http.client.HTTPResponse(sock)
        response.begin()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, response.read()


def _head(running: Running, path: str, *framing: str) -> str:
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {HOST}:{running.server.port}",
        f"Authorization: Bearer {running.token}",
        "Content-Type: application/scim+json; charset=utf-8",
        *framing,
    ]
    return "\r\n".join(lines) + "\r\n\r\n"


def _chunked_past(limit: int) -> list[bytes]:
    """A chunked body that passes ``limit`` bytes, in 64 KiB chunks, and its last chunk."""
    piece = 64 * 1024
    chunk = f"{piece:x}\r\n".encode() + b" " * piece + b"\r\n"
    return [chunk] * (limit // piece + 2) + [b"0\r\n\r\n"]


def _assert_scim_413(status: int, headers: dict, body: bytes) -> None:
    assert status == 413, body
    assert headers["content-type"].startswith("application/scim+json"), headers
    assert headers.get("connection") == "close"
    error = json.loads(body)
    assert error["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert error["status"] == "413"
    assert error["detail"] == (
        f"request body too large: the limit is {LIMIT} bytes ([server] max_body_bytes)"
    )


@pytest.mark.parametrize("path", ["/scim/v2/Users", "//scim/v2/Users/abc"])
def test_a_content_length_over_the_limit_is_a_scim_413_before_the_body(
    plain: Running, path: str
) -> None:
    """waitress refuses it from the header alone; the answer is still a SCIM error."""
    head = _head(plain, path, f"Content-Length: {LIMIT + 1}")

    _assert_scim_413(*_raw_exchange(plain, head))


def test_a_chunked_body_over_the_limit_is_a_scim_413(plain: Running) -> None:
    head = _head(plain, "/scim/v2/Users", "Transfer-Encoding: chunked")

    _assert_scim_413(*_raw_exchange(plain, head, _chunked_past(LIMIT)))


def test_a_body_of_exactly_the_limit_reaches_the_service(plain: Running) -> None:
    """[server] max_body_bytes is the largest body accepted (README, Configuration)."""
    body = b"{}" + b" " * (LIMIT - 2)
    head = _head(plain, "/scim/v2/Users", f"Content-Length: {len(body)}")

    status, _, answer = _raw_exchange(plain, head, [body])

    assert status == 400, answer  # the service read it: no userName
    assert json.loads(answer)["detail"] == "userName: required"


def test_a_refused_body_is_in_the_activity_log_under_its_token(plain: Running) -> None:
    """The served app records waitress's refusal as its own: event, token, request id."""
    head = _head(plain, "/scim/v2/Users", f"Content-Length: {LIMIT + 1}")

    _, headers, _ = _raw_exchange(plain, head)
    tail = plain.server.cli("activity", "tail", "-n", "1")

    assert f"request={headers['x-request-id']}" in tail
    assert " 413  failed  POST /scim/v2/Users  token=entra " in tail
    assert "([server] max_body_bytes)" in tail and plain.token not in tail


def test_a_control_panel_body_over_the_limit_keeps_waitress_page(plain: Running) -> None:
    head = _head(plain, "/admin/sign-in", f"Content-Length: {LIMIT + 1}")

    status, headers, _ = _raw_exchange(plain, head)

    assert status == 413
    assert headers["content-type"].startswith("text/plain")


# -- refusals without a valid token: counted, not logged one by one (admin.refusals) ------

REFUSED = 300


def _refuse_many(port: int, count: int, per_connection: int = 25) -> list[int]:
    """``count`` requests without a valid token (no header, then an unknown token, in turn),
    ``per_connection`` on each keep-alive connection; returns their statuses."""
    statuses = []
    for start in range(0, count, per_connection):
        connection = http.client.HTTPConnection(HOST, port, timeout=30)
        try:
            for number in range(start, min(start + per_connection, count)):
                headers = {"Authorization": "Bearer pw_guess"} if number % 2 else {}
                connection.request("GET", "/scim/v2/Users", headers=headers)
                response = connection.getresponse()
                response.read()
                statuses.append(response.status)
        finally:
            connection.close()
    return statuses


def _refused_events(server: ServerProcess) -> list[tuple[str, int]]:
    """``(reason, requests it stands for)`` of each refused event in ``activity tail``."""
    found = []
    for line in server.cli("activity", "tail", "-n", "1000").splitlines():
        reason = re.search(r"  reason=(\S+)", line)
        if line.startswith(" ") or reason is None:
            continue  # a detail line, or no refusal
        repeated = re.search(r"  repeated=(\d+)", line)
        found.append((reason.group(1), int(repeated.group(1)) if repeated else 1))
    return found


def test_many_refused_requests_add_few_events_and_the_stop_writes_their_count(
    start_server: Callable[..., Running],
) -> None:
    """300 refusals write one event per kind while served; the polite stop writes the
    counts, and they add up to every request; the Connection status counted each one."""
    running = start_server()
    server = running.server

    assert _refuse_many(server.port, REFUSED) == [401] * REFUSED
    assert sorted(_refused_events(server)) == [("no-header", 1), ("unknown-token", 1)]
    assert server.stop(timeout=STOP_TIMEOUT) == 0

    events = _refused_events(server)
    assert len(events) == 4
    assert sum(count for _, count in events) == REFUSED
    assert sorted(events) == [
        ("no-header", 1),
        ("no-header", REFUSED // 2 - 1),
        ("unknown-token", 1),
        ("unknown-token", REFUSED // 2 - 1),
    ]
    status = json.loads((server.data_dir / "connection-status.json").read_text("utf-8"))
    refusals = [r for token in status["tokens"] for r in token["refusals"]]
    assert sum(r["count"] for r in refusals) == REFUSED


@pytest.mark.slow
def test_several_processes_on_postgresql_each_count_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    """Each worker counts its own refusals: at most a first and a count per kind each, and
    the stop writes every count, so the events add up to every request."""
    from tests.pgserver import empty_database

    server = ServerProcess(tmp_path, dsn=empty_database(), processes=2)
    server.start(timeout=START_TIMEOUT)
    try:
        # A connection each, so that both workers get some (the kernel spreads connections).
        assert _refuse_many(server.port, REFUSED, per_connection=1) == [401] * REFUSED
    finally:
        code = server.stop(timeout=STOP_TIMEOUT)

    assert code == 0, server.log_tail()
    events = _refused_events(server)
    assert sum(count for _, count in events) == REFUSED
    assert len(events) <= 2 * 2 * 2  # processes x kinds x (first, count)
