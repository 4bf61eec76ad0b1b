"""A network link to PostgreSQL that can go silent: every packet dropped, no socket closed.

What a network partition, a firewall dropping packets or a paused VM look like to a client:
nothing arrives, nothing is refused, and the client's kernel retransmits for about fifteen
minutes (``net.ipv4.tcp_retries2``) before it gives up. A relay that merely stops
forwarding cannot show this: its own kernel still acknowledges every byte, so the client's
TCP (keepalives, ``tcp_user_timeout``) sees a healthy peer. So the silence is made in the
kernel, on a link of the test's own:

- a network namespace with a veth pair to it (198.18.0.0/15, the benchmarking range): the
  client connects to the far end's address;
- a relay listening there (its listening socket made inside the namespace, on a thread that
  entered it) forwards each connection to PostgreSQL on 127.0.0.1;
- :meth:`BlackholeLink.cut` puts a ``blackhole`` queueing discipline on both ends of the
  pair: every packet either way is dropped, and the sockets on both sides stay open;
  :meth:`BlackholeLink.mend` takes it away and the traffic flows again.

Needs root (namespaces, links, queueing disciplines) and ``ip`` and ``tc``; without them
:func:`open_link` says so through :func:`tests.external.missing`. Nothing outside the
namespace and the one veth pair is touched, and deleting the namespace removes both.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import socket
import subprocess
import threading
from contextlib import suppress

from tests.external import missing

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_serial = iter(range(1, 64))


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, text=True)


def _can_build_links() -> str | None:
    """Why a link cannot be built here, or None."""
    if os.geteuid() != 0:
        return "a blackholed network link needs root (network namespaces, tc)"
    for program in ("ip", "tc"):
        if shutil.which(program) is None:
            return f"a blackholed network link needs {program} (apt-get install iproute2)"
    return None


class BlackholeLink:
    """A relay to ``127.0.0.1:upstream_port`` reached over a link that :meth:`cut` silences.

    :attr:`host` and :attr:`port` are where a client connects. Use :func:`open_link`.
    The other way round, a program run :meth:`inside` the namespace is a machine across
    the link: it reaches this side at :attr:`near_address`, and is seen coming from
    :attr:`host`.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        serial = next(_serial)
        tag = f"{os.getpid() % 10000}x{serial}"
        self.namespace = f"proware-bh-{tag}"
        self._near, self._far = f"pwbh{tag}a", f"pwbh{tag}b"  # at most 15 characters
        # A /30 per link: .1 this side, .2 the namespace's.
        base = (os.getpid() % 128) * 512 + serial * 4
        network = f"198.{18 + base // 65536}.{base // 256 % 256}.{base % 256}"
        prefix = network.rsplit(".", 1)[0]
        last = int(network.rsplit(".", 1)[1])
        self.near_address = f"{prefix}.{last + 1}"
        self.host = f"{prefix}.{last + 2}"
        self.port = 0
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._cut = False
        self._closed = False
        self._in_namespace = ["ip", "netns", "exec", self.namespace]

    def open(self) -> None:
        """Build the namespace and the veth pair, and start relaying."""
        _run("ip", "netns", "add", self.namespace)
        atexit.register(self.close)
        _run("ip", "link", "add", self._near, "type", "veth", "peer", "name", self._far,
             "netns", self.namespace)  # fmt: skip
        _run("ip", "addr", "add", f"{self.near_address}/30", "dev", self._near)
        _run("ip", "link", "set", self._near, "up")
        _run(*self._in_namespace, "ip", "addr", "add", f"{self.host}/30", "dev", self._far)
        _run(*self._in_namespace, "ip", "link", "set", self._far, "up")
        self._listener = self._listen_in_namespace()
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, name="blackhole-accept", daemon=True).start()

    def inside(self, *command: str) -> list[str]:
        """``command`` to run in the link's namespace, as on a machine across the link."""
        return [*self._in_namespace, *command]

    def cut(self) -> None:
        """Drop every packet on the link, both ways, from now on; close nothing."""
        if self._cut:
            return
        _run("tc", "qdisc", "add", "dev", self._near, "root", "blackhole")
        _run(*self._in_namespace, "tc", "qdisc", "add", "dev", self._far, "root", "blackhole")
        self._cut = True

    def mend(self) -> None:
        """Let packets through again."""
        if not self._cut:
            return
        _run("tc", "qdisc", "del", "dev", self._near, "root")
        _run(*self._in_namespace, "tc", "qdisc", "del", "dev", self._far, "root")
        self._cut = False

    def close(self) -> None:
        """Stop relaying and delete the namespace (which deletes the veth pair)."""
        if self._closed:
            return
        self._closed = True
        with suppress(subprocess.CalledProcessError):
            self.mend()
        with self._lock:
            sockets = [self._listener, *self._sockets]
            self._sockets.clear()
        for sock in sockets:
            if sock is not None:
                # shutdown first: a close alone leaves a socket that a pump thread is
                # reading open, and PostgreSQL would keep the relayed session (and any
                # serving lock it holds) for the rest of the test run.
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with suppress(OSError):
                    sock.close()
        with suppress(subprocess.CalledProcessError):
            _run("ip", "netns", "del", self.namespace)
        atexit.unregister(self.close)

    def _listen_in_namespace(self) -> socket.socket:
        """A listening socket that belongs to the namespace: made by a thread that entered it
        (``setns`` moves only the calling thread; the socket stays where it was made)."""
        made: list[socket.socket | BaseException] = []

        def listen() -> None:
            try:
                with open(f"/var/run/netns/{self.namespace}") as handle:
                    if _libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns into the link's namespace")
                made.append(socket.create_server((self.host, 0)))
            except BaseException as error:  # handed to the caller's thread
                made.append(error)

        thread = threading.Thread(target=listen, name="blackhole-listen")
        thread.start()
        thread.join()
        (result,) = made
        if isinstance(result, BaseException):
            raise result
        return result

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._closed:
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=_pump, args=(source, target), name="blackhole-pump", daemon=True
                ).start()


def _pump(source: socket.socket, target: socket.socket) -> None:
    with suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    with suppress(OSError):
        target.shutdown(socket.SHUT_WR)


def open_link(upstream_port: int) -> BlackholeLink:
    """A new :class:`BlackholeLink` to PostgreSQL's port, relaying; skips (or fails in CI)
    where links cannot be built."""
    why = _can_build_links()
    if why is not None:
        missing(why)
    link = BlackholeLink(upstream_port)
    try:
        link.open()
    except (OSError, subprocess.CalledProcessError) as error:
        link.close()
        detail = getattr(error, "stderr", "") or str(error)
        missing(f"a blackholed network link could not be built: {detail.strip()}")
    return link
