"""The real service as a subprocess: ``python app.py --config FILE serve``, for tests and the bench.

:class:`ServerProcess` writes a config file and a data directory under a root directory,
creates tokens and flips the provisioning switch with the operator commands, starts waitress,
waits for ``/healthz``, and stops it politely (SIGINT) or kills it (SIGKILL). It also reads
the process's memory and CPU time from ``/proc``. :class:`ScimConnection` is one keep-alive
HTTP connection speaking SCIM JSON with a bearer token.

Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.config import ServerSettings

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "app.py"
HOST = "127.0.0.1"
PREFIX = "/scim/v2"
SCIM_JSON = "application/scim+json; charset=utf-8"  # what Entra sends (entra-provisioning.md A0)


class ServerFailed(RuntimeError):
    """The server did not come up (it exited or never answered); the message has its log."""


def _ephemeral_low() -> int:
    """The lowest port the kernel gives outgoing connections (Linux's default if unknown)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _port_order() -> list[int]:
    """Ports below the ephemeral range, from a point that differs between test runs (two runs
    at once on one machine start apart)."""
    low = _ephemeral_low()
    span = range(min(10_000, low // 2), low)
    start = os.getpid() * 7919 % len(span)
    return [*span[start:], *span[:start]]


_PORTS = _port_order()
_ports = itertools.cycle(_PORTS)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now and nothing else will take.

    Not a port the kernel picks (bind to port 0): it picks from the ephemeral range, from
    which every outgoing connection of the run (HTTP clients, database sessions) takes its
    local port too, so one could take the port between this call and the server's bind.
    Below that range only a listener takes a port, and each is handed out once per cycle.
    """
    for port in itertools.islice(_ports, len(_PORTS)):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((HOST, port))
            except OSError:  # in use, or still in TIME_WAIT
                continue
        return port
    raise RuntimeError(f"no free TCP port on {HOST} below the ephemeral range")


def wait_for_http(
    port: int, path: str, process: subprocess.Popen, timeout: float, log: Path | None = None
) -> None:
    """Poll ``GET path`` until it answers 200.

    :raises ServerFailed: if the process exits first or ``timeout`` seconds pass.
    """
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise ServerFailed(
                f"server exited with code {process.returncode} before answering {path}" + _tail(log)
            )
        try:
            connection = http.client.HTTPConnection(HOST, port, timeout=2)
            try:
                connection.request("GET", path)
                if connection.getresponse().status == 200:
                    return
            finally:
                connection.close()
        except OSError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            raise ServerFailed(f"server did not answer {path} within {timeout:.0f} s" + _tail(log))
        time.sleep(0.01)


def _tail(log: Path | None, lines: int = 15) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    return "\n--- server log (tail) ---\n" + "\n".join(text)


def proc_status(pid: int) -> dict[str, int]:
    """Memory figures of a process from ``/proc/<pid>/status`` in bytes (VmRSS, VmHWM)."""
    figures = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                figures[name] = int(value.split()[0]) * 1024  # reported in kB
    return figures


def proc_cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used, from ``/proc/<pid>/stat``."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        # The command name (field 2) may hold spaces; count fields after its ")".
        fields = stat.read().rpartition(")")[2].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class ServerProcess:
    """The service with its own config and data under ``root``.

    :param threads: waitress worker threads (default: as served).
    :param access_log: one log line per request (off for the bench: it costs throughput).
    :param extra_config: more TOML sections for the config file (e.g. ``[sso]``).
    :param dsn: serve from this PostgreSQL database instead of the data directory.
    :param processes: server processes (``serve --processes``; above 1 needs ``dsn``).
    :param source: the checkout whose ``app.py`` runs (the bench's ``--compare`` runs an
        earlier revision's).
    """

    root: Path
    threads: int = ServerSettings().threads
    access_log: bool = False
    extra_config: str = ""
    dsn: str = ""
    processes: int = 1
    source: Path = REPO
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        self.config_path.write_text(
            "[server]\n"
            f'host = "{HOST}"\n'
            f"port = {self.port}\n"
            f"threads = {self.threads}\n"
            "[storage]\n"
            f"path = {json.dumps(str(self.data_dir))}\n"
            + (f'backend = "postgresql"\ndsn = {json.dumps(self.dsn)}\n' if self.dsn else "")
            + "[log]\n"
            'level = "WARNING"\n'
            f"access_log = {'true' if self.access_log else 'false'}\n" + self.extra_config,
            encoding="utf-8",
        )

    @property
    def config_path(self) -> Path:
        return self.root / "config.toml"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("the server is not running")
        return self.process.pid

    def cli(self, *args: str) -> str:
        """Run an operator command (``python app.py --config ... ARGS``); returns its stdout."""
        result = subprocess.run(
            [sys.executable, str(self.source / APP.name), "--config", str(self.config_path), *args],
            cwd=self.source,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            raise RuntimeError(f"app.py {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def create_token(self, name: str = "test") -> str:
        """A new read-write bearer token (``token create``)."""
        return self.cli("token", "create", "--name", name).strip()

    def enable_provisioning(self) -> None:
        """Turn User Provisioning on (``provisioning enable``)."""
        self.cli("provisioning", "enable")

    def start(self, timeout: float = 60.0) -> float:
        """Start ``app.py serve`` and wait until ``/healthz`` answers.

        :returns: seconds from process start to the first answer (interpreter start-up,
            imports and opening the data included).
        :raises ServerFailed: if it exits (e.g. refuses its data) or does not answer in time.
        """
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("the server is already running")
        started = time.perf_counter()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(self.source / APP.name), "--config", str(self.config_path)]
                + ["serve"]
                + ([f"--processes={self.processes}"] if self.processes != 1 else []),
                cwd=self.source,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal is ours, not the server's
            )
        try:
            wait_for_http(self.port, "/healthz", self.process, timeout, self.log_path)
        except ServerFailed:
            self.kill()
            raise
        return time.perf_counter() - started

    def kill(self) -> None:
        """SIGKILL: the process, and with ``processes`` its workers, die at once, whatever
        they were doing."""
        if self.process is None:
            return
        if self.process.poll() is None:
            # Its own session (start_new_session): the group holds the server's workers too.
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process = None

    def stop(self, timeout: float = 30.0) -> int | None:
        """Stop politely (SIGINT, so the server closes its store); SIGKILL after ``timeout``.

        :returns: the exit code, or None if it had to be killed.
        """
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        code = self.process.returncode
        self.process = None
        return code

    def memory(self) -> dict[str, int]:
        """Resident memory now (VmRSS) and at its peak (VmHWM), in bytes."""
        return proc_status(self.pid)

    def cpu_seconds(self) -> float:
        """CPU time the server has used so far."""
        return proc_cpu_seconds(self.pid)

    def data_bytes(self) -> int:
        """Total size of the files in the data directory."""
        return sum(path.stat().st_size for path in self.data_dir.rglob("*") if path.is_file())

    def log_tail(self, lines: int = 15) -> str:
        """The end of the server's output, for failure messages."""
        return _tail(self.log_path, lines)

    def connect(self, token: str, timeout: float = 30.0) -> ScimConnection:
        """A keep-alive SCIM connection to this server."""
        return ScimConnection(self.port, token, timeout)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop(timeout=10)


@dataclass(frozen=True)
class Reply:
    """A response: status and decoded JSON body (None when empty)."""

    status: int
    body: Any  # the decoded JSON document
    headers: dict[str, str]


class ScimConnection:
    """One keep-alive HTTP/1.1 connection sending SCIM JSON with a bearer token.

    A connection error (refused, reset, timed out) propagates as ``OSError`` or
    ``http.client.HTTPException``; the connection reconnects on the next request.
    """

    def __init__(self, port: int, token: str, timeout: float = 30.0) -> None:
        self._connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
        self._headers = {"Authorization": f"Bearer {token}"}

    def request(self, method: str, path: str, body: object = None) -> Reply:
        """Send ``method`` to ``PREFIX + path``; ``body`` is sent as JSON when not None."""
        headers = dict(self._headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = SCIM_JSON
        try:
            self._connection.request(method, PREFIX + path, body=data, headers=headers)
            response = self._connection.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException):
            self._connection.close()
            raise
        return Reply(
            response.status,
            json.loads(raw) if raw else None,
            {name.lower(): value for name, value in response.getheaders()},
        )

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(self, path: str, body: object) -> Reply:
        return self.request("POST", path, body)

    def patch(self, path: str, body: object) -> Reply:
        return self.request("PATCH", path, body)

    def delete(self, path: str) -> Reply:
        return self.request("DELETE", path)

    def close(self) -> None:
        self._connection.close()
