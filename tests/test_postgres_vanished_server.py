"""A server whose machine vanishes (powered off, cut off) while it serves: PostgreSQL drops
its serving lock within about ``[storage] timeout_seconds``, so a restore or migration may
proceed, instead of keeping it until the database host's own keepalives notice (two hours
by default).

The vanishing is real: the server runs as a process in a network namespace, across a link
to a PostgreSQL of the test's own that listens on the link itself (tests/blackhole.py);
the link is cut (every packet dropped, no socket closed) and the process killed, so
nothing ever tells PostgreSQL the session ended. Only its TCP keepalives can.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg.conninfo import make_conninfo

from app import main
from storage.postgres.connection import Database
from tests.blackhole import BlackholeLink, open_link
from tests.external import missing
from tests.pgserver import PostgresServer, clean_database, find_bindir

ROOT = Path(__file__).parent.parent
TIMEOUT = 3  # [storage] timeout_seconds of the vanished server and of the restore
# How long the test waits for the vanished server's lock to go, where about TIMEOUT is
# promised (measured: 2.5 to 3.6 s): generous on a loaded machine, as the kernel's timers
# drop the session, and far below the 15 minutes to two hours PostgreSQL kept it before.
BOUND = 4.0 * TIMEOUT

_numbers = itertools.count(1)

# A serving process's hold on the database, and nothing else (no requests, no threads of
# a web server): what a restore is refused for.
_HOLD = """
import sys, time
from storage.postgres.connection import Database
from storage.postgres.serving import ServingLock

ServingLock(Database(sys.argv[1], timeout=int(sys.argv[2])))
print("holding", flush=True)
time.sleep(3600)
"""


@pytest.fixture(scope="module")
def across() -> Iterator[tuple[BlackholeLink, PostgresServer]]:
    """A link, and a PostgreSQL that a process inside the link's namespace reaches over it."""
    bindir = find_bindir()
    if bindir is None:
        missing("PostgreSQL's server is not installed (apt-get install postgresql)")
        raise AssertionError("unreachable")  # missing() always raises
    link = open_link(0)  # its relay stays unused: the database listens on the link itself
    server = PostgresServer(
        bindir, listen_addresses=("127.0.0.1", link.near_address), trusted_hosts=(link.host,)
    )
    try:
        server.start()
        yield link, server
    finally:
        link.close()
        server.stop()


@pytest.fixture
def link(across: tuple[BlackholeLink, PostgresServer]) -> Iterator[BlackholeLink]:
    yield across[0]
    across[0].mend()


@pytest.fixture
def dsn(across: tuple[BlackholeLink, PostgresServer]) -> str:
    """A new database with Proware's schema, reached from this side over 127.0.0.1."""
    server = across[1]
    name = f"vanished_{next(_numbers)}"
    server.execute(f"CREATE DATABASE {name} TEMPLATE template0")
    dsn = server.dsn(name)
    Database(dsn).close()  # applies the migrations
    return dsn


@pytest.fixture
def holder(link: BlackholeLink, dsn: str) -> Iterator[subprocess.Popen[str]]:
    """A serving process across the link, holding its share of the database."""
    across_link = make_conninfo(dsn, host=link.near_address)
    process = subprocess.Popen(
        link.inside(sys.executable, "-c", _HOLD, across_link, str(TIMEOUT)),
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "holding"
        yield process
    finally:
        process.kill()
        process.wait()
        process.stdout.close()  # type: ignore[union-attr]


def restore(capsys: pytest.CaptureFixture, config: Path, backup: Path) -> tuple[int, str]:
    code = main(["--config", str(config), "restore", str(backup)])
    return code, capsys.readouterr().err


@pytest.fixture
def config(tmp_path: Path, dsn: str, capsys: pytest.CaptureFixture) -> Path:
    path = tmp_path / "postgres.toml"
    path.write_text(
        f'[storage]\nbackend = "postgresql"\ndsn = "{dsn}"\ntimeout_seconds = {TIMEOUT}\n',
        encoding="utf-8",
    )
    assert main(["--config", str(path), "backup", str(tmp_path / "backup.json")]) == 0
    capsys.readouterr()
    return path


def test_a_restore_proceeds_within_the_timeout_once_a_servers_machine_vanished(
    link: BlackholeLink,
    holder: subprocess.Popen[str],
    config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    backup = tmp_path / "backup.json"
    code, refusal = restore(capsys, config, backup)
    assert code == 1
    # Which session, from where, and what ends it: the machine's silence, or an operator.
    assert f"proware server pid {holder.pid} on " in refusal
    assert f"from {link.host} port " in refusal
    assert f"within about {TIMEOUT} s" in refusal
    assert "SELECT pg_terminate_backend(<backend pid>)" in refusal

    link.cut()
    holder.kill()  # its machine is gone: nothing it sends (a FIN, a RST) arrives
    holder.wait()
    vanished = time.monotonic()
    while (outcome := restore(capsys, config, backup))[0] != 0:
        assert "in use by 1 Proware server" in outcome[1], outcome[1]
        if time.monotonic() - vanished > BOUND:
            pytest.fail(f"PostgreSQL still kept the vanished server's lock after {BOUND:g} s")
        time.sleep(0.1)


def settings_of(dsn: str, timeout: int) -> dict[str, str]:
    """What PostgreSQL applies to a pooled session of a :class:`Database` on ``dsn`` with
    ``timeout``, in base units."""
    database = Database(dsn, timeout=timeout)
    try:
        with database.connection() as connection:
            rows = connection.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('tcp_keepalives_idle', 'tcp_keepalives_interval', 'tcp_keepalives_count', "
                "'tcp_user_timeout', 'application_name', 'work_mem')"
            ).fetchall()
    finally:
        database.close()
    return dict(rows)


def test_every_session_asks_the_database_to_drop_it_once_silent_for_the_timeout() -> None:
    found = settings_of(clean_database(), timeout=7)

    assert found["tcp_keepalives_idle"] == "3"
    assert found["tcp_keepalives_interval"] == "1"
    assert found["tcp_keepalives_count"] == "4"
    assert found["tcp_user_timeout"] == "7000"  # milliseconds
    assert found["application_name"] == f"proware pid {os.getpid()} on {socket.gethostname()}"


def test_settings_the_dsn_sends_itself_are_kept_and_win() -> None:
    dsn = make_conninfo(
        clean_database(),
        options="-c tcp_keepalives_idle=30 -c work_mem=8MB",
        application_name="mine",
    )
    found = settings_of(dsn, timeout=7)

    assert found["tcp_keepalives_idle"] == "30"
    assert found["work_mem"] == str(8 * 1024)  # kB
    assert found["tcp_user_timeout"] == "7000"
    assert found["application_name"] == "mine"


def test_settings_from_the_environment_are_kept_and_win(monkeypatch: pytest.MonkeyPatch) -> None:
    """libpq reads PGOPTIONS and PGAPPNAME only when the connection string has no value."""
    monkeypatch.setenv("PGOPTIONS", "-c tcp_keepalives_count=9")
    monkeypatch.setenv("PGAPPNAME", "from the environment")
    found = settings_of(clean_database(), timeout=7)

    assert found["tcp_keepalives_count"] == "9"
    assert found["tcp_keepalives_idle"] == "3"
    assert found["application_name"] == "from the environment"
