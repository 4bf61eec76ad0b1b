"""Several server processes on one socket: ``[server] processes``, ``serve --processes N``
and the supervisor in server/processes.py.

The key and the flag are checked like every setting: at least 1, and 1 with the embedded
store. The supervisor runs for real, on 127.0.0.1, in a process of its own
(:func:`run_supervisor`, through ``python -c``), with a test-only app whose workers answer
their pid: it forks real workers, and signals go to real processes. Nothing here needs
PostgreSQL.
"""

from __future__ import annotations

import atexit
import http.client
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response, request

from app import create_app, main
from server import commands, processes
from server.config import (
    ConfigError,
    LogSettings,
    ServerSettings,
    Settings,
    load_settings,
    with_processes,
)
from storage.settings import StorageSettings
from tests.conftest import wait_for
from tests.serverproc import HOST, REPO


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


POSTGRESQL_CONFIG = '[storage]\nbackend = "postgresql"\ndsn = "postgresql://proware@db/proware"\n'


# -- the key and the flag ------------------------------------------------------------------


def test_one_process_is_the_default(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, "")).server.processes == 1


def test_several_processes_are_accepted_with_the_postgresql_store(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, POSTGRESQL_CONFIG + "[server]\nprocesses = 4\n"))

    assert settings.server.processes == 4


@pytest.mark.parametrize("count", [0, -2])
def test_fewer_than_one_process_is_refused(tmp_path: Path, count: int) -> None:
    path = write(tmp_path, POSTGRESQL_CONFIG + f"[server]\nprocesses = {count}\n")

    with pytest.raises(ConfigError, match=r"\[server\] processes must be at least 1"):
        load_settings(path)


def test_several_processes_with_the_embedded_store_are_refused_naming_the_fix(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "[server]\nprocesses = 2\n")

    with pytest.raises(ConfigError) as refused:
        load_settings(path)

    message = str(refused.value)
    assert message.startswith(f"{path}: [server] processes = 2 needs the PostgreSQL store")
    assert 'set [storage] backend = "postgresql"' in message
    assert "Outgrowing one process" in message
    assert "\n" not in message


def test_the_flag_overrides_the_key_and_is_checked_as_it_is(tmp_path: Path) -> None:
    postgresql = load_settings(write(tmp_path, POSTGRESQL_CONFIG))
    embedded = load_settings(None)

    assert with_processes(postgresql, 3).server.processes == 3
    assert with_processes(embedded, 1) == embedded
    with pytest.raises(ConfigError, match=r"--processes 2 needs the PostgreSQL store"):
        with_processes(embedded, 2)
    with pytest.raises(ConfigError, match=r"--processes must be at least 1"):
        with_processes(postgresql, 0)


def test_serve_with_several_processes_and_the_embedded_store_exits_2_naming_the_fix(
    capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    config = write(tmp_path, f'[storage]\npath = "{tmp_path / "data"}"\n')

    code = main(["--config", str(config), "serve", "--processes", "2"])

    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert captured.err == (
        f"error: {config}: --processes 2 needs the PostgreSQL store: "
        'set [storage] backend = "postgresql" (README, "Outgrowing one process")\n'
    )
    assert not (tmp_path / "data").exists()  # stopped before opening anything


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_serve_refuses_a_process_count_below_one(capsys: pytest.CaptureFixture, value: str) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--processes", value])

    assert exited.value.code == 2
    assert "--processes: must be a whole number, 1 or more" in capsys.readouterr().err


# -- serve hands the supervisor one process's app and start-up lines -----------------------


def test_serve_with_several_processes_runs_the_supervisor_with_the_start_up_lines(
    capsys: pytest.CaptureFixture,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    restore_logging: None,
) -> None:
    """The supervisor gets the app one process would serve (closed on leaving), the
    waitress options but where to listen, and the lines one process prints."""
    # Built past the check that keeps the embedded store to one process: nothing forks here.
    settings = Settings(
        server=ServerSettings(port=8123, processes=3, threads=2),
        storage=StorageSettings(path=tmp_path / "data"),
        log=LogSettings(level="WARNING"),
        source="test",
    )
    handed: list[dict[str, Any]] = []

    def supervise(
        settings: Settings, open_app: processes.OpenApp, options: dict[str, Any], **kw: Any
    ) -> int:
        with open_app(settings) as app:  # what the supervisor does before the first fork
            kw["announce"](settings, app)
        # Released on leaving: the data directory's lock is free for a worker's app.
        create_app(settings).extensions["proware.backend"].close()
        handed.append({"options": options, **kw})
        return 0

    monkeypatch.setattr(commands.processes, "serve", supervise)

    code = commands.serve(settings, create_app, "python app.py")

    out = capsys.readouterr().out
    assert code == 0
    assert "Tenant URL:   http://127.0.0.1:8123/scim/v2" in out
    assert "token create --name entra" in out
    [call] = handed
    assert call["options"]["threads"] == 2
    assert "host" not in call["options"] and "port" not in call["options"]


# -- the supervisor's pieces, in this process -----------------------------------------------


def test_port_0_binds_a_free_port_and_listens_at_once() -> None:
    [listener] = processes.listen(HOST, 0)
    try:
        port = listener.getsockname()[1]
        assert port != 0
        assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        # Connections queue before any worker accepts.
        socket.create_connection((HOST, port), timeout=5).close()
    finally:
        listener.close()


def test_an_address_in_use_stops_the_start_with_exit_1(capsys: pytest.CaptureFixture) -> None:
    with socket.create_server((HOST, 0)) as taken:
        port = taken.getsockname()[1]
        settings = Settings(server=ServerSettings(host=HOST, port=port, processes=2))

        code = processes.serve(settings, _never_built, {})

    assert code == 1
    assert capsys.readouterr().err == (
        f"error: cannot listen on {HOST} port {port}: Address already in use\n"
    )


@contextmanager
def _never_built(settings: Settings) -> Iterator[Flask]:
    raise AssertionError("no app is built when the address cannot be bound")
    yield  # a generator, for contextmanager


@pytest.mark.parametrize(
    ("status", "described"),
    [
        (0, "exited with status 0"),
        (3 << 8, "exited with status 3"),
        (signal.SIGKILL, "was killed by SIGKILL"),
    ],
)
def test_a_workers_end_is_described_for_the_log(status: int, described: str) -> None:
    assert processes.describe_exit(status) == described


def test_starts_after_failed_ones_wait_twice_as_long_each_time_up_to_a_limit() -> None:
    delays = [processes.retry_delay(failures) for failures in range(12)]

    assert delays[:4] == [0.0, 0.25, 0.5, 1.0]
    assert delays[-1] == processes.MAX_RETRY_DELAY


# -- the supervisor of real processes ------------------------------------------------------

# Set in the supervisor's environment: the workers' app cannot be built; it takes seconds.
WORKER_FAILS = "PROWARE_TEST_WORKER_CANNOT_START"
WORKER_STARTS_IN = "PROWARE_TEST_WORKER_STARTS_IN"
# A file the supervisor's process appends its pid to at exit (atexit), for the test to read.
ATEXIT_FILE = "PROWARE_TEST_ATEXIT_FILE"
SLOW_BODY_BYTES = 2 * 1024 * 1024


@contextmanager
def open_pid_app(settings: Settings) -> Iterator[Flask]:
    """A test-only app for each worker: ``/pid`` answers the worker's pid, ``/slow`` touches
    a marker file, takes its time, and answers its pid and 2 MiB."""
    if os.environ.get(WORKER_FAILS):
        raise ConfigError("the test app cannot start")
    time.sleep(float(os.environ.get(WORKER_STARTS_IN, "0")))
    app = Flask(__name__)

    @app.get("/pid")
    def pid() -> str:
        logging.getLogger("proware.test").info("answered")
        return str(os.getpid())

    @app.get("/slow")
    def slow() -> Response:
        Path(request.args["marker"]).write_text(str(os.getpid()), encoding="ascii")
        time.sleep(float(request.args["seconds"]))
        body = f"{os.getpid()}\n".encode().ljust(SLOW_BODY_BYTES, b"x")
        return Response(body, mimetype="text/plain")

    yield app


def run_supervisor(count: int) -> int:
    """What :func:`supervise` runs with ``python -c``: the supervisor of ``count`` workers of
    :func:`open_pid_app`, on a free port of 127.0.0.1."""
    settings = Settings(
        server=ServerSettings(host=HOST, port=0, processes=count),
        log=LogSettings(level="INFO", access_log=False),
        source="test",
    )
    commands.configure_logging(settings)
    if os.environ.get(ATEXIT_FILE):
        atexit.register(_append_pid, Path(os.environ[ATEXIT_FILE]))
    return processes.serve(settings, open_pid_app, {"threads": 1}, stop_timeout=5)


def _append_pid(path: Path) -> None:
    with path.open("a", encoding="ascii") as file:
        file.write(f"{os.getpid()}\n")


def process_state(pid: int) -> str | None:
    """The process's state letter from ``/proc`` ("S", "R", "Z" ...), None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def children(pid: int) -> set[int]:
    """The live child processes of ``pid`` (from each process's parent in ``/proc``)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text(encoding="ascii").rpartition(")")[2].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry.name))
    return found


@dataclass
class Supervised:
    """A supervisor started by :func:`run_supervisor` in its own session, and its log."""

    process: subprocess.Popen
    log: Path
    root: Path
    port: int = 0

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def workers(self) -> set[int]:
        return children(self.process.pid)

    def serving(self) -> set[int]:
        """The live workers the supervisor has logged as serving."""
        logged = {int(pid) for pid in re.findall(r"worker (\d+) serving", self.output())}
        return self.workers() & logged

    def get(self, path: str) -> tuple[int, bytes]:
        """``GET path`` on a connection of its own, so that any worker may take it."""
        connection = http.client.HTTPConnection(HOST, self.port, timeout=15)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def answering_pid(self) -> int:
        status, body = self.get("/pid")
        assert status == 200
        return int(body)

    @contextmanager
    def slow_request(self, seconds: float = 1.0) -> Iterator[Callable[[], tuple[int, bytes]]]:
        """A slow request on its own connection, running once this is entered; the callable
        waits for its response."""
        marker = self.root / f"slow-{time.monotonic_ns()}"
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(self.get, f"/slow?marker={marker}&seconds={seconds}")
            wait_for(lambda: marker.exists() or answer.done(), what="the slow request")
            yield lambda: answer.result(timeout=30)

    def answers_while_one_is_busy(self) -> tuple[int, int]:
        """(the pid busy with a slow request, the pid answering meanwhile): a worker runs
        one request at a time, so the second is another worker's."""
        with self.slow_request() as slow_answer:
            other = self.answering_pid()
            status, body = slow_answer()
        assert status == 200
        return int(body.split(b"\n", 1)[0]), other


@pytest.fixture
def supervise(tmp_path: Path) -> Iterator[Callable[..., Supervised]]:
    """Start the supervisor of N workers; waits until it serves (``serving=False``: only
    until it runs). Anything still running at the end is killed, group and all."""
    started: list[Supervised] = []

    def start(count: int, *, serving: bool = True, **env: str) -> Supervised:
        log = tmp_path / f"supervisor-{len(started)}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "import sys; from tests.test_processes import run_supervisor; "
                    "sys.exit(run_supervisor(int(sys.argv[1])))",
                    str(count),
                ],
                cwd=REPO,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killed whole below
            )
        supervised = Supervised(process, log, tmp_path)
        started.append(supervised)
        if serving:
            wait_for(
                lambda: "Serving on" in supervised.output() or process.poll() is not None,
                what="the supervisor",
            )
            found = re.search(r"Serving on http://127\.0\.0\.1:(\d+)", supervised.output())
            assert found, supervised.output()
            supervised.port = int(found.group(1))
            wait_for(lambda: len(supervised.serving()) == count, what=f"{count} workers")
        return supervised

    yield start
    for supervised in started:
        if supervised.process.poll() is None:
            os.killpg(supervised.process.pid, signal.SIGKILL)
        supervised.process.wait(timeout=30)


def test_two_workers_answer_each_from_its_own_process(
    supervise: Callable[..., Supervised],
) -> None:
    server = supervise(2)

    busy, other = server.answers_while_one_is_busy()

    assert busy != other
    assert {busy, other} == server.workers()
    # Each worker's log lines carry its own pid.
    assert f"[{other}] INFO proware.test answered" in server.output()


def test_a_killed_worker_is_replaced_and_the_other_answers_meanwhile(
    supervise: Callable[..., Supervised],
) -> None:
    """Its replacement takes a second to start here: until then the survivor answers all."""
    server = supervise(2, **{WORKER_STARTS_IN: "1"})
    victim, survivor = sorted(server.workers())

    os.kill(victim, signal.SIGKILL)
    answers = [server.answering_pid() for _ in range(20)]  # each on a new connection

    assert answers == [survivor] * 20
    wait_for(lambda: len(server.serving() - {survivor}) == 1, what="a replacement")
    [replacement] = server.serving() - {survivor}
    assert replacement != victim
    assert f"worker {victim} was killed by SIGKILL; starting another" in server.output()
    assert set(server.answers_while_one_is_busy()) == {survivor, replacement}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG)")
def test_workers_stop_when_their_supervisor_is_killed(
    supervise: Callable[..., Supervised],
) -> None:
    """A SIGKILLed supervisor cannot stop its workers: Linux tells them, and they stop."""
    server = supervise(2)
    workers = server.workers()

    server.process.kill()

    server.process.wait(timeout=10)
    # Orphans are reparented to init, which may leave them unreaped ("Z") in a container.
    wait_for(
        lambda: {process_state(pid) for pid in workers} <= {None, "Z"}, what="the workers to stop"
    )


@pytest.mark.parametrize(
    ("signum", "to_group"),
    [(signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGTERM, True)],
    ids=["SIGTERM", "SIGINT", "SIGTERM-to-the-group"],
)
def test_a_stop_signal_stops_every_worker_and_the_supervisor_exits_0(
    supervise: Callable[..., Supervised], tmp_path: Path, signum: int, to_group: bool
) -> None:
    """To the supervisor (docker), or to every process at once (systemd, a Ctrl-C). The
    supervisor's atexit hooks run in it alone, not in its workers."""
    exits = tmp_path / "atexit"
    server = supervise(2, **{ATEXIT_FILE: str(exits)})
    workers = server.workers()

    if to_group:
        os.killpg(server.process.pid, signum)
    else:
        server.process.send_signal(signum)

    assert server.process.wait(timeout=15) == 0
    assert [process_state(pid) for pid in workers] == [None, None]
    with pytest.raises(ProcessLookupError):  # nothing left of its process group
        os.killpg(server.process.pid, 0)
    assert "killing" not in server.output()
    assert exits.read_text(encoding="ascii") == f"{server.process.pid}\n"


@pytest.mark.parametrize("to_group", [False, True], ids=["to-the-supervisor", "to-the-group"])
def test_a_request_running_when_the_stop_signal_arrives_gets_its_whole_response(
    supervise: Callable[..., Supervised], to_group: bool
) -> None:
    server = supervise(2)
    workers = server.workers()

    with server.slow_request(seconds=1.0) as slow_answer:
        if to_group:
            os.killpg(server.process.pid, signal.SIGTERM)
        else:
            server.process.send_signal(signal.SIGTERM)
        status, body = slow_answer()

    assert status == 200
    assert len(body) == SLOW_BODY_BYTES
    assert int(body.split(b"\n", 1)[0]) in workers
    assert server.process.wait(timeout=15) == 0


def test_workers_that_cannot_start_make_the_supervisor_give_up_with_exit_1(
    supervise: Callable[..., Supervised],
) -> None:
    """After a few failed starts in a row, each waiting longer, with no worker serving."""
    server = supervise(2, serving=False, **{WORKER_FAILS: "1"})

    assert server.process.wait(timeout=30) == 1
    output = server.output()
    assert output.count("before it could serve") >= processes.MAX_START_FAILURES
    # The last one's and perhaps another's that was starting too: each worker says why.
    assert output.count("error: the test app cannot start\n") >= processes.MAX_START_FAILURES
    assert "starting another in 2 s" in output
    assert "(5 in a row)\n" in output  # and no promise of another
    assert "error: no worker process could start" in output
    with pytest.raises(ProcessLookupError):
        os.killpg(server.process.pid, 0)
