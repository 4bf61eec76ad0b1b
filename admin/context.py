"""What the control panel's modules share: its long-lived objects, and where it lives."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from flask import current_app, g, request

from admin import sessions
from admin.accounts import AdminAccounts
from admin.audit import AuditLog
from admin.connection import ConnectionStatus
from admin.refusals import RefusalDigest
from admin.sessions import RevokedSessions, SessionPolicy
from admin.setup_link import SetupLinks
from admin.sso import RelyingParty
from admin.sso_access import Access, Policy, SsoState, access_by_id, local_allowed
from admin.throttle import PasswordChecks
from scim.api.context import Services
from storage.errors import StorageError, log_background_failure
from storage.repository import Clock

log = logging.getLogger("proware.admin")

PATH = "/admin"
EXTENSION = "proware.admin"
# The setup link: this, then its secret (which the access log leaves out).
SETUP_PATH = f"{PATH}/setup/"


def setup_url(base_url: str, secret: str) -> str:
    """The setup link with ``secret``, on the server at ``base_url``."""
    return f"{base_url.rstrip('/')}{SETUP_PATH}{secret}"


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Provider:
    """What the settings page and ``sso status`` show of the identity provider's side."""

    issuer: str
    client_id: str
    scopes: str
    username_claim: str
    # Where the client secret comes from, e.g. "file /etc/proware/sso-secret" (never the
    # secret); empty when none is configured.
    secret_source: str


@dataclass
class SingleSignOn:
    """Single sign-on's long-lived objects.

    :param relying_party: None while the identity provider's side (issuer, client id and
        secret) is not configured: single sign-on then cannot be turned on.
    """

    provider: Provider
    relying_party: RelyingParty | None
    state: SsoState
    # This process's config.toml [sso] as a start records it (sso_access.CONFIG_KEYS).
    config: Mapping[str, object]

    def policy(self) -> Policy:
        """The access policy in force now."""
        return self.state.policy()

    def enabled(self) -> bool:
        """Whether people can sign in with the identity provider now."""
        return self.relying_party is not None and self.policy().enabled

    def local_allowed(self) -> bool:
        """Whether local password accounts may sign in: always while SSO is off."""
        return self.relying_party is None or local_allowed(self.policy())

    def started_elsewhere(self) -> list[str]:
        """The ``[sso]`` keys in which a server process started after this one differs from
        it (processes sharing a PostgreSQL database): they then disagree on who may sign in."""
        return self.state.started_with(self.config)


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
    sso: SingleSignOn
    clock: Clock
    # Counts repeated refusals (SCIM requests without a valid token, sign-ins) for the log.
    refusals: RefusalDigest
    # When a token or switch change made here applies (scim.tokens.propagation).
    propagation: str
    # Whether other server processes may serve this install (PostgreSQL): the connection
    # status then shows their requests only once they save them.
    shared_storage: bool = False
    # The password checks this process may still make (the sign-in form's brake).
    password_checks: PasswordChecks = field(default_factory=PasswordChecks)

    def current_admin(self) -> tuple[str | None, str | None]:
        """The signed-in admin of this request, or why the session ended (see sessions)."""
        check = None
        if self.sso.enabled():
            group = self.sso.policy().admin_group
            repository = self.services.repository

            def check(user_id: str) -> Access:
                return access_by_id(repository, user_id, group)

        return sessions.current_admin(
            self.accounts,
            self.revoked,
            self.session_policy,
            self.clock(),
            sso=check,
            local_allowed=self.sso.local_allowed(),
            endings=self.sso.state.endings(),
        )

    def note(self, operation: str, *, status: int = 200, **fields: object) -> None:
        """Record a control panel event in the audit log, with the request's facts.

        ``admin`` (who did it) is the signed-in admin unless given; never pass a secret.
        """
        self.audit.append(self._event(operation, status, fields))

    def note_refused_sign_in(self, *, status: int, **fields: object) -> None:
        """Record a refused sign-in as :meth:`note` does, but a client's repeats (same
        address, reason and username) only as a count (:mod:`admin.refusals`)."""
        self.refusals.offer(self._event("sign-in refused", status, fields), self.audit.append)

    def _event(self, operation: str, status: int, fields: dict[str, object]) -> dict:
        return {
            "time": g.get("request_started_at") or self.clock().isoformat(),
            "request_id": g.get("request_id"),
            "client": request.remote_addr,
            "admin": g.get("admin"),
            "source": "control panel",
            "operation": operation,
            "status": status,
            **fields,
        }

    def close(self) -> None:
        """Write the refusals still counted, make the audit log durable and save the
        connection status (server shutdown).

        Runs at interpreter exit: a failure is logged, never raised.
        """
        try:
            self.refusals.close()
            self.audit.close()
        except (OSError, StorageError) as exc:
            log_background_failure(log, "could not save the control panel's files at shutdown", exc)
        # Logs its own failure: a connection-status.json left root's (or a full disk) was
        # "Exception ignored in atexit callback" and the whole context's repr on stderr.
        self.connection.flush()


def context() -> AdminContext:
    """The control panel of the app handling the current request."""
    return current_app.extensions[EXTENSION]
