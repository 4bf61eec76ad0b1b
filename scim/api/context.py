"""What the blueprints share: the service objects of one app, and the request's base URL."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote

from flask import current_app, g, request

from scim.service import Directory
from scim.settings import ScimSettings
from scim.tokens import ProvisioningSwitch, TokenStore
from storage.repository import Repository

log = logging.getLogger("proware.activity")

EventListener = Callable[[dict], None]


@dataclass
class Services:
    """The long-lived objects one app instance works with (``app.extensions["proware"]``).

    :param public_url: the base URL clients see (``[server] public_url``); empty: each
        request's own.
    """

    scim: ScimSettings
    public_url: str
    repository: Repository
    directory: Directory
    tokens: TokenStore
    switch: ProvisioningSwitch
    # Called with one event dict per data-changing or refused SCIM request (activity log).
    listeners: list[EventListener] = field(default_factory=list)
    # Takes, instead of the listeners, the event of each request refused for want of a valid
    # token: the control panel's digest (admin.refusals) hands them a client's first refusal
    # and a count of its repeats. None: the listeners get every one.
    refusal_listener: EventListener | None = None

    def emit(self, event: dict) -> None:
        """Hand an event to every listener; a failing listener is logged and skipped.

        Events of a change arrive after its commit: a listener that raised into the request
        would turn a stored change into a 500, and Entra would retry a create that had
        succeeded (then get 409 for ever). The activity log must never fail provisioning.
        """
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                log.exception("activity listener %r failed on event %r", listener, event)

    def emit_refusal(self, event: dict) -> None:
        """Hand the event of a request refused for want of a valid token to the refusal
        listener (or, without one, to every listener); never raises into the request."""
        if self.refusal_listener is None:
            self.emit(event)
            return
        try:
            self.refusal_listener(event)
        except Exception:
            log.exception("refusal listener failed on event %r", event)

    def emit_all(self, events: list[dict]) -> None:
        """Hand a commit's events to every listener, in order."""
        for event in events:
            self.emit(event)


def services() -> Services:
    """The services of the app handling the current request."""
    return current_app.extensions["proware"]


def base_url() -> str:
    """The SCIM base URL for this request: ``[server] public_url``, else the request's own.

    Behind a trusted proxy waitress has already applied X-Forwarded-Proto/-Host to the
    request, so its scheme and host are what the client used. Built from them directly:
    ``request.root_url`` also turns the URL into an IRI, which cost 8 us a request and is
    not what a Location header wants anyway.
    """
    found = services()
    if found.public_url:
        return found.public_url.rstrip("/") + found.scim.prefix
    root = f"{request.scheme}://{request.host}{quote(request.root_path)}"
    return root.rstrip("/") + found.scim.prefix


def request_context(status: int) -> dict:
    """The facts about this request that an activity event records (never the token)."""
    token = g.get("token") or g.get("presented_token")
    return {
        "time": g.get("request_started_at"),
        "request_id": g.get("request_id"),
        "client": request.remote_addr,
        "token": token.name if token else None,
        "method": request.method,
        "path": request.path,
        "status": status,
    }
