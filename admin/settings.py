"""``[sso]``: the control panel's single sign-on settings (read by :mod:`server.config`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SsoSettings:
    """``[sso]``: signing in to the control panel with Microsoft Entra ID (OpenID Connect).

    The identity provider's side (``issuer``, ``client_id``, the secret, ``scopes``,
    ``username_claim``) belongs together with the secret, so it is set here only; the access
    policy (``enabled``, ``admin_group``, ``local_sign_in``) can also be changed in the
    control panel, which then overrides these values.
    """

    enabled: bool = False
    # https://login.microsoftonline.com/<tenant-id>/v2.0 for Entra: the discovery document is
    # at issuer + "/.well-known/openid-configuration" and its "issuer" must equal this.
    issuer: str = ""
    client_id: str = ""
    # A file holding the client secret (never the secret itself: it must not sit in a config
    # file that is copied around). Relative to the config file's directory.
    client_secret_file: str = ""
    scopes: str = "openid profile email"
    # The ID-token claim that names the directory user, matched case-insensitively against
    # userName. Entra fills preferred_username with the UPN, which its default mapping sends
    # as userName.
    username_claim: str = "preferred_username"
    # displayName of the provisioned group whose active members may use the control panel.
    admin_group: str = ""
    # Whether local password accounts may still sign in (the break-glass path).
    local_sign_in: bool = True


@dataclass(frozen=True)
class ClientSecret:
    """The OpenID client secret, read by the process, and where it came from (for display)."""

    value: str = field(repr=False)
    # e.g. "file /etc/proware/sso-secret" or "$PROWARE_SSO_CLIENT_SECRET"; never the secret.
    source: str
