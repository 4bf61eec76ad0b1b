"""What the control panel's modules share: its long-lived objects, and where it lives."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import current_app

from admin.accounts import AdminAccounts
from admin.audit import AuditLog
from admin.connection import ConnectionStatus
from admin.sessions import RevokedSessions, SessionPolicy
from admin.setup_link import SetupLinks
from scim.api.context import Services
from storage.repository import Clock

log = logging.getLogger("proware.admin")

PATH = "/admin"
EXTENSION = "proware.admin"


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


@dataclass
class AdminContext:
    """The control panel's long-lived objects (``app.extensions["proware.admin"]``)."""

    services: Services
    accounts: AdminAccounts
    audit: AuditLog
    connection: ConnectionStatus
    setup: SetupLinks
    revoked: RevokedSessions
    session_policy: SessionPolicy
    clock: Clock

    def close(self) -> None:
        """Make the audit log durable and save the connection status (server shutdown).

        Runs at interpreter exit: a failure is logged, never raised.
        """
        try:
            self.audit.close()
            self.connection.save()
        except OSError:
            log.warning("could not save the control panel's files at shutdown", exc_info=True)


def context() -> AdminContext:
    """The control panel of the app handling the current request."""
    return current_app.extensions[EXTENSION]
