"""The test helpers' free ports: below the ephemeral range, each handed out once."""

from __future__ import annotations

import socket

from tests import serverproc
from tests.serverproc import HOST, free_port


def test_free_ports_are_below_the_range_outgoing_connections_take_theirs_from() -> None:
    ports = [free_port() for _ in range(50)]

    assert len(set(ports)) == 50
    assert all(port < serverproc._ephemeral_low() for port in ports)
    with _listening(free_port()) as listener:
        with socket.create_connection(listener.getsockname()) as outgoing:
            assert outgoing.getsockname()[1] >= serverproc._ephemeral_low()


def test_a_port_something_listens_on_is_not_handed_out(monkeypatch) -> None:
    with _listening(free_port()) as listener:
        taken, free = listener.getsockname()[1], free_port()
        monkeypatch.setattr(serverproc, "_ports", iter([taken, free]))

        assert free_port() == free


def _listening(port: int) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((HOST, port))
    listener.listen()
    return listener
