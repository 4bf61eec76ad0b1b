"""Serve the app with waitress, keeping connections open after a 204 or 304.

waitress 3.0.2 closes an HTTP/1.1 connection after every response that has no Content-Length,
and it never gives one to a 204 or 304 (RFC 9110 §8.6 forbids it). Those responses have no
body by definition (RFC 9112 §6.3), so the client knows where the next response starts; closing
is needless. For Entra it is costly: every group PATCH and DELETE is answered 204 (A11-A13),
so each one cost a new TCP (and, through a tunnel, TLS) connection, and the member change
after it waited for the handshake. :class:`KeepAliveTask` keeps the connection unless the
client asked to close it; everything else is waitress's own behaviour.
"""

from __future__ import annotations

import logging

from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, MultiSocketServer, create_server
from waitress.task import WSGITask


class KeepAliveTask(WSGITask):
    """waitress's WSGI task, minus the close after a response that cannot have a body."""

    _bodiless_keep_alive = False

    def build_response_header(self) -> bytes:
        self._bodiless_keep_alive = (
            self.version == "1.1"
            and not self.has_body
            and not self.close_on_finish
            and self.request.headers.get("CONNECTION", "").lower() != "close"
        )
        try:
            return super().build_response_header()
        finally:
            self._bodiless_keep_alive = False

    def set_close_on_finish(self) -> None:
        # Called by build_response_header for "no Content-Length"; a 204/304 needs none.
        if not self._bodiless_keep_alive:
            super().set_close_on_finish()


class KeepAliveChannel(HTTPChannel):
    task_class = KeepAliveTask


def serve(app, **options) -> None:  # type: ignore[no-untyped-def]
    """What ``waitress.serve(app, **options)`` does, with :class:`KeepAliveChannel`."""
    logging.basicConfig()  # as waitress.serve does; idempotent once logging is configured
    server = create_server(app, **options)
    listeners = server.map.values() if isinstance(server, MultiSocketServer) else [server]
    for listener in listeners:
        if isinstance(listener, BaseWSGIServer):
            listener.channel_class = KeepAliveChannel  # type: ignore[misc]
    server.print_listen("Serving on http://{}:{}")
    server.run()
