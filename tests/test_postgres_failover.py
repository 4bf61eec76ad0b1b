"""Several server processes on one PostgreSQL: one dies, the others go on, nothing is lost.

Two servers (as on two machines) share a database; client threads create users and add
them to a group on both. One server is killed with SIGKILL mid-load: the other keeps
answering, and once the dead one is back, every create and member add that either
acknowledged is there, seen alike from both. The same for a worker of ``serve --processes``.
Also: a wrong database address stops the start with one line; a database that goes away
mid-run gives 503s, and service comes back with it.
"""

from __future__ import annotations

import http.client
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from serverproc import APP, REPO, ScimConnection, ServerProcess

from scim import constants
from tests.external import missing
from tests.pgserver import PostgresServer, empty_database, find_bindir

pytestmark = pytest.mark.slow

THREADS = 6
SECONDS = 4.0  # of load on each side of the kill


class Load:
    """Threads creating users and adding them to one group, on the servers given in turn,
    recording what was acknowledged and what was answered after a moment."""

    def __init__(self, ports: list[int], token: str, group_id: str) -> None:
        self.ports, self.token, self.group_id = ports, token, group_id
        self.created: dict[str, str] = {}  # id -> userName, acknowledged (201)
        self.added: set[str] = set()  # user ids whose member add was acknowledged (204)
        self.answered: list[tuple[float, int]] = []  # (time, port) of every 2xx
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(n,)) for n in range(THREADS)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _run(self, number: int) -> None:
        port = self.ports[number % len(self.ports)]
        connection = ScimConnection(port, self.token, timeout=10)
        count = 0
        while not self._stop.is_set():
            count += 1
            name = f"t{number}-{count}@contoso.com"
            try:
                reply = connection.post("/Users", {"schemas": [constants.USER], "userName": name})
                if reply.status != 201:
                    self._note(f"create {name}: {reply.status}")
                    continue
                user_id = reply.body["id"]
                with self._lock:
                    self.created[user_id] = name
                    self.answered.append((time.monotonic(), port))
                op = {"op": "add", "path": "members", "value": [{"value": user_id}]}
                body = {"schemas": [constants.PATCH_OP], "Operations": [op]}
                reply = connection.patch(f"/Groups/{self.group_id}", body)
                if reply.status == 204:
                    with self._lock:
                        self.added.add(user_id)
                        self.answered.append((time.monotonic(), port))
            except (OSError, http.client.HTTPException):
                time.sleep(0.05)  # the server is gone: not acknowledged, try again
        connection.close()

    def _note(self, error: str) -> None:
        with self._lock:
            self.errors.append(error)


def _directory(port: int, token: str, group_id: str) -> tuple[set[str], set[str]]:
    """The user ids and the group's member ids one server lists."""
    connection = ScimConnection(port, token)
    users: set[str] = set()
    while True:
        reply = connection.get(f"/Users?startIndex={len(users) + 1}&count=500&attributes=id")
        page = reply.body["Resources"]
        users |= {user["id"] for user in page}
        if not page:
            break
    group = connection.get(f"/Groups/{group_id}").body
    connection.close()
    return users, {member["value"] for member in group.get("members", [])}


def _group(server: ServerProcess, token: str) -> str:
    connection = server.connect(token)
    reply = connection.post("/Groups", {"schemas": [constants.GROUP], "displayName": "Everyone"})
    connection.close()
    assert reply.status == 201, reply.body
    return reply.body["id"]


def test_a_killed_server_loses_nothing_and_the_other_keeps_answering(tmp_path: Path) -> None:
    dsn = empty_database()
    servers = [ServerProcess(tmp_path / f"server-{n}", dsn=dsn) for n in range(2)]
    token = servers[0].create_token("failover")
    servers[0].enable_provisioning()
    for server in servers:
        server.start()
    try:
        group_id = _group(servers[0], token)
        load = Load([server.port for server in servers], token, group_id)
        load.start()
        time.sleep(SECONDS)
        killed_at = time.monotonic()
        servers[1].kill()
        time.sleep(SECONDS)
        servers[1].start()
        time.sleep(1.0)
        load.stop()

        survivor_after_kill = [
            t for t, port in load.answered if port == servers[0].port and t > killed_at
        ]
        assert len(survivor_after_kill) > 10, "the other server stopped answering"
        assert load.errors == []
        for server in servers:
            users, members = _directory(server.port, token, group_id)
            assert set(load.created) <= users, "an acknowledged create is missing"
            assert load.added <= members, "an acknowledged member add is missing"
    finally:
        for server in servers:
            server.stop()


def test_a_killed_worker_of_serve_processes_is_replaced_and_loses_nothing(
    tmp_path: Path,
) -> None:
    server = ServerProcess(tmp_path, dsn=empty_database(), processes=2)
    token = server.create_token("workers")
    server.enable_provisioning()
    server.start()
    try:
        group_id = _group(server, token)
        load = Load([server.port], token, group_id)
        load.start()
        time.sleep(SECONDS)
        workers = _children(server.pid)
        assert len(workers) == 2
        killed_at = time.monotonic()
        subprocess.run(["kill", "-9", str(workers[0])], check=True)
        time.sleep(SECONDS)
        load.stop()

        assert len([t for t, _ in load.answered if t > killed_at + 1]) > 10
        replaced = _children(server.pid)
        assert len(replaced) == 2 and workers[0] not in replaced
        users, members = _directory(server.port, token, group_id)
        assert set(load.created) <= users
        assert load.added <= members
    finally:
        server.stop()


def _children(pid: int) -> list[int]:
    found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in found]


def test_a_wrong_database_address_stops_the_start_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[storage]\nbackend = "postgresql"\n'
        'dsn = "postgresql://proware:s3cret@127.0.0.1:1/proware?connect_timeout=2"\n',
        encoding="utf-8",
    )

    result = subprocess.run(
        [sys.executable, str(APP), "--config", str(config), "serve"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "127.0.0.1" in lines[0] and "s3cret" not in result.stderr + result.stdout


def test_a_database_lost_mid_run_gives_503_until_it_is_back(tmp_path: Path) -> None:
    """Its own PostgreSQL, stopped and started under a running server."""
    bindir = find_bindir()
    if bindir is None:
        missing("PostgreSQL's server is not installed (apt-get install postgresql)")
        raise AssertionError("unreachable")  # missing() always raises
    database = PostgresServer(bindir)
    database.start()
    try:
        database.execute("CREATE DATABASE lost")
        server = ServerProcess(tmp_path, dsn=database.dsn("lost"))
        token = server.create_token("lost")
        server.enable_provisioning()
        server.start()
        try:
            connection = server.connect(token)
            assert connection.get("/Users").status == 200
            database.stop(remove=False)
            reply = connection.get("/Users")
            assert reply.status == 503, reply.body
            assert reply.headers["retry-after"] == "5"
            assert "database is unavailable" in reply.body["detail"]
            database.start()
            deadline = time.monotonic() + 20
            while (reply := connection.get("/Users")).status != 200:
                assert time.monotonic() < deadline, reply.body
                time.sleep(0.2)
            created = connection.post("/Users", {"schemas": [constants.USER], "userName": "back"})
            assert created.status == 201
            connection.close()
        finally:
            server.stop()
    finally:
        database.stop()
