"""Settings: one typed, documented object loaded from TOML (see ``config.example.toml``).

Every key has a default, so the service starts with no file at all. Each subsystem declares
the section it reads (``[scim]`` in :mod:`scim.settings`, ``[storage]`` in
:mod:`storage.settings`, ``[sso]`` in :mod:`admin.settings`); the process's own sections are
here, and so are reading the file and the checks across sections. Unknown sections or
keys and values of the wrong type stop the start with a message naming them, rather than
being silently dropped (as Flask's ``config.from_file`` would drop lowercase keys).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from waitress.adjustments import KNOWN_PROXY_HEADERS

from admin.settings import ClientSecret, SsoSettings
from scim.settings import ScimSettings
from storage.settings import BACKENDS, POSTGRESQL, TINYDB, StorageSettings

CONFIG_ENV = "PROWARE_CONFIG"
DEFAULT_CONFIG_FILE = Path("config.toml")
# Overrides [sso] client_secret_file (e.g. from a secrets manager or systemd's credentials).
SSO_SECRET_ENV = "PROWARE_SSO_CLIENT_SECRET"
# Overrides [storage] dsn, so that a password need not sit in the config file.
STORAGE_DSN_ENV = "PROWARE_STORAGE_DSN"


class ConfigError(Exception):
    """The configuration file is missing, unreadable or has a bad key or value."""


@dataclass(frozen=True)
class ServerSettings:
    """``[server]``: where and how waitress listens."""

    host: str = "127.0.0.1"
    port: int = 8000
    # The externally visible base URL (scheme, host, optional path), e.g. behind ngrok or a
    # TLS reverse proxy. Empty: built from each request.
    public_url: str = ""
    # 0: chosen for the store (request_threads). 1: requests run on waitress's main loop, no
    # worker thread (server.httpserver); N: waitress's N worker threads.
    threads: int = 0
    # Server processes sharing one listening socket (server.processes). More than 1 needs the
    # PostgreSQL store: the embedded one belongs to one process. ``serve --processes N`` wins.
    processes: int = 1
    # waitress's proxy settings: the address of a proxy whose X-Forwarded-* headers are trusted.
    trusted_proxy: str = ""
    trusted_proxy_count: int = 1
    trusted_proxy_headers: list[str] = field(
        default_factory=lambda: ["x-forwarded-proto", "x-forwarded-host", "x-forwarded-for"]
    )
    max_body_bytes: int = 1_048_576


@dataclass(frozen=True)
class LogSettings:
    """``[log]``: what goes to standard output."""

    level: str = "INFO"
    access_log: bool = True
    # A request that takes this long or longer gets a warning saying what it spent the time
    # on (server/requestcost.py); 0: none.
    slow_request_ms: int = 100


@dataclass(frozen=True)
class Settings:
    """Everything the service reads at start-up."""

    server: ServerSettings = field(default_factory=ServerSettings)
    scim: ScimSettings = field(default_factory=ScimSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    sso: SsoSettings = field(default_factory=SsoSettings)
    log: LogSettings = field(default_factory=LogSettings)
    source: str = "built-in defaults"

    def tenant_url(self, request_base: str | None = None) -> str:
        """The SCIM base URL an admin pastes into Entra's Tenant URL field."""
        base = self.server.public_url or request_base or self.local_url
        return base.rstrip("/") + self.scim.prefix

    def own_address_note(self) -> str:
        """What to say after a link printed with :attr:`local_url` behind a trusted proxy
        without ``public_url``: browsers reach this server only through the proxy."""
        if self.server.trusted_proxy and not self.server.public_url:
            return (
                "(this server's own address: open the same path through the proxy, or set "
                "[server] public_url to print the address browsers use)"
            )
        return ""

    @property
    def local_url(self) -> str:
        """The URL the server answers on locally."""
        host = self.server.host
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        if ":" in shown:
            shown = f"[{shown}]"
        return f"http://{shown}:{self.server.port}"


_SECTIONS: dict[str, type] = {
    "server": ServerSettings,
    "scim": ScimSettings,
    "storage": StorageSettings,
    "sso": SsoSettings,
    "log": LogSettings,
}


# [server] threads = 0 means these: with the embedded store a request is CPU work from end
# to end, and one thread on waitress's main loop is fastest (CPython runs one thread at a
# time; a hand-off to a worker cost more than it saved). With PostgreSQL a request waits on
# the database for most of its round trips and its commit, and four threads keep the process
# busy meanwhile (make bench, 10,000 users, one process: 651 req/s with 1, 570 with 2, 834
# with 4, 591 with 8).
THREADS_FOR = {TINYDB: 1, POSTGRESQL: 4}


def request_threads(settings: Settings) -> int:
    """The threads that run requests: ``[server] threads``, or chosen for the store."""
    return chosen_threads(settings.server.threads, settings.storage.backend)


def chosen_threads(threads: int, backend: str) -> int:
    """``threads``, or when it is 0 the number chosen for ``backend`` (:data:`THREADS_FOR`)."""
    return threads or THREADS_FOR[backend]


def threads_choice() -> str:
    """What ``threads = 0`` chooses, for help texts: "1 with tinydb, 4 with postgresql"."""
    return ", ".join(f"{threads} with {backend}" for backend, threads in THREADS_FOR.items())


def resolve_config_path(explicit: str | None) -> Path | None:
    """The config file to use: ``--config``, then ``$PROWARE_CONFIG``, then ./config.toml."""
    if explicit:
        return Path(explicit)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    if DEFAULT_CONFIG_FILE.is_file():
        return DEFAULT_CONFIG_FILE
    return None


def load_settings(path: Path | None = None) -> Settings:
    """Read and check ``path`` (or use the built-in defaults when it is None).

    A relative ``[storage] path`` is taken relative to the config file's directory.
    :raises ConfigError: naming the file, section and key at fault.
    """
    if path is None:
        return _check(Settings())
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return _check(from_mapping(raw, source=str(path), base_dir=path.parent))


def from_mapping(raw: dict[str, Any], *, source: str, base_dir: Path | None = None) -> Settings:
    """Build settings from a parsed TOML mapping, checking every section, key and type."""
    sections: dict[str, Any] = {}
    for name, values in raw.items():
        if name not in _SECTIONS:
            known = ", ".join(f"[{s}]" for s in _SECTIONS)
            raise ConfigError(f"{source}: unknown section [{name}] (known: {known})")
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: [{name}] must be a table")
        sections[name] = _section(_SECTIONS[name], name, values, source)
    settings = Settings(**sections, source=source)
    if base_dir is not None:
        settings = _relative_to(settings, base_dir)
    return settings


def _section(cls: type, name: str, values: dict[str, Any], source: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(
                f"{source}: unknown key [{name}] {key} (known: {', '.join(sorted(known))})"
            )
        default = getattr(cls(), key)
        kwargs[key] = _coerce(value, default, f"{source}: [{name}] {key}")
    return cls(**kwargs)


def _coerce(value: Any, default: Any, where: str) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, not {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, not {value!r}")
        return value
    if isinstance(default, Path):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where} must be a non-empty path string, not {value!r}")
        return Path(value)
    if isinstance(default, list):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where} must be a list of strings, not {value!r}")
        return value
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, not {value!r}")
    return value


def _check(settings: Settings) -> Settings:
    """Cross-field checks that a type alone cannot express."""
    where = settings.source
    server, scim = settings.server, settings.scim
    if not 0 < server.port < 65536:
        raise ConfigError(f"{where}: [server] port must be 1-65535, not {server.port}")
    if server.threads < 0:
        raise ConfigError(
            f"{where}: [server] threads must be 0 (chosen for the store) or more, "
            f"not {server.threads}"
        )
    _check_proxy(server, where)
    if server.max_body_bytes < 1024:
        raise ConfigError(f"{where}: [server] max_body_bytes must be at least 1024")
    if server.public_url:
        parts = urlsplit(server.public_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ConfigError(
                f"{where}: [server] public_url must be an http(s) URL with a host and no query, "
                f"like 'https://proware.example.com', not {server.public_url!r}"
            )
    if not scim.prefix.startswith("/") or scim.prefix.endswith("/") or "//" in scim.prefix:
        raise ConfigError(
            f"{where}: [scim] prefix must start with '/' and not end with one, like '/scim/v2'"
        )
    if scim.max_results < 1:
        raise ConfigError(f"{where}: [scim] max_results must be at least 1")
    if scim.max_filter_length < 64:
        raise ConfigError(f"{where}: [scim] max_filter_length must be at least 64")
    if settings.log.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"{where}: [log] level must be DEBUG, INFO, WARNING or ERROR")
    if settings.log.slow_request_ms < 0:
        raise ConfigError(f"{where}: [log] slow_request_ms must be 0 (off) or more")
    _check_sso(settings.sso, where)
    settings = _check_storage(settings, where)
    n = server.processes
    _check_processes(settings, n, "[server] processes", f"[server] processes = {n}")
    return settings


def _check_proxy(server: ServerSettings, where: str) -> None:
    """The forwarded-header settings waitress would otherwise refuse with a traceback at
    start-up (an unknown header), or take in a way nobody means (a count of 0 slices the
    whole X-Forwarded-For list, so the client's own leftmost entry would be believed)."""
    if server.trusted_proxy_count < 1:
        raise ConfigError(
            f"{where}: [server] trusted_proxy_count must be at least 1, "
            f"not {server.trusted_proxy_count}"
        )
    for header in server.trusted_proxy_headers:
        if header.lower() not in KNOWN_PROXY_HEADERS:
            raise ConfigError(
                f"{where}: [server] trusted_proxy_headers: unknown header {header!r} "
                f"(known: {', '.join(sorted(KNOWN_PROXY_HEADERS))})"
            )


def with_processes(settings: Settings, processes: int) -> Settings:
    """``settings`` with ``[server] processes`` replaced by ``serve --processes N``, checked
    as the key is.

    :raises ConfigError: ``processes`` is below 1, or above 1 with the embedded store.
    """
    _check_processes(settings, processes, "--processes", f"--processes {processes}")
    return replace(settings, server=replace(settings.server, processes=processes))


def _check_processes(settings: Settings, processes: int, name: str, given: str) -> None:
    """``processes`` is at least 1, and 1 with the embedded store; ``name`` and ``given`` say
    where it came from in messages ("--processes", "--processes 4")."""
    where = settings.source
    if processes < 1:
        raise ConfigError(f"{where}: {name} must be at least 1, not {processes}")
    if processes > 1 and settings.storage.backend != POSTGRESQL:
        # The journal store and the control file belong to the one process that locked them.
        raise ConfigError(
            f"{where}: {given} needs the PostgreSQL store: set [storage] backend = "
            f'"{POSTGRESQL}" (README, "Outgrowing one process")'
        )


def _check_storage(settings: Settings, where: str) -> Settings:
    """The backend is known and has what it needs; ``$PROWARE_STORAGE_DSN`` overrides the dsn."""
    storage = settings.storage
    if storage.backend not in BACKENDS:
        raise ConfigError(
            f"{where}: [storage] backend must be one of {', '.join(repr(b) for b in BACKENDS)}, "
            f"not {storage.backend!r}"
        )
    if storage.pool_size < 1:
        raise ConfigError(f"{where}: [storage] pool_size must be at least 1")
    if storage.timeout_seconds < 1:
        raise ConfigError(f"{where}: [storage] timeout_seconds must be at least 1")
    dsn = os.environ.get(STORAGE_DSN_ENV, "").strip() or storage.dsn
    if storage.backend != POSTGRESQL:
        if storage.dsn:
            raise ConfigError(
                f"{where}: [storage] dsn is set but backend is {storage.backend!r}; "
                f'set backend = "{POSTGRESQL}" to use the database'
            )
        return settings
    if not dsn:
        raise ConfigError(
            f'{where}: [storage] backend = "{POSTGRESQL}" needs [storage] dsn '
            f'(or ${STORAGE_DSN_ENV}), e.g. "postgresql://proware@localhost/proware"'
        )
    return replace(settings, storage=replace(storage, dsn=dsn))


def _check_sso(sso: SsoSettings, where: str) -> None:
    if not sso.enabled:
        return
    required = ["issuer", "client_id", "admin_group"]
    if not os.environ.get(SSO_SECRET_ENV):
        required.append("client_secret_file")
    missing = [name for name in required if not getattr(sso, name).strip()]
    if missing:
        raise ConfigError(
            f"{where}: [sso] enabled = true needs {', '.join(f'[sso] {m}' for m in missing)}"
            " (see config.example.toml)"
        )
    parts = urlsplit(sso.issuer)
    loopback = parts.hostname in ("127.0.0.1", "::1", "localhost")
    if (
        not parts.netloc
        or parts.query
        or parts.fragment
        or not (parts.scheme == "https" or (parts.scheme == "http" and loopback))
    ):
        raise ConfigError(
            f"{where}: [sso] issuer must be an https URL without query, like "
            f"'https://login.microsoftonline.com/<tenant-id>/v2.0', not {sso.issuer!r}"
        )
    if "openid" not in sso.scopes.split():
        raise ConfigError(f"{where}: [sso] scopes must include 'openid', not {sso.scopes!r}")
    if not sso.username_claim.strip():
        raise ConfigError(f"{where}: [sso] username_claim must name an ID-token claim")


def client_secret(sso: SsoSettings) -> ClientSecret | None:
    """The client secret for ``[sso]``, or None when none is configured (no issuer, client id
    or secret source): single sign-on then cannot be turned on.

    :raises ConfigError: as :func:`read_client_secret`.
    """
    from_env = bool(os.environ.get(SSO_SECRET_ENV, "").strip())
    if not (sso.issuer and sso.client_id and (from_env or sso.client_secret_file)):
        return None
    source = f"${SSO_SECRET_ENV}" if from_env else f"file {sso.client_secret_file}"
    return ClientSecret(read_client_secret(sso), source)


def read_client_secret(sso: SsoSettings) -> str:
    """The OpenID client secret: ``$PROWARE_SSO_CLIENT_SECRET``, else the first line of
    ``[sso] client_secret_file``. Error messages name the file, never its content.

    :raises ConfigError: the file is missing, unreadable or empty.
    """
    from_env = os.environ.get(SSO_SECRET_ENV, "").strip()
    if from_env:
        return from_env
    path = Path(sso.client_secret_file)
    try:
        lines = path.read_text(encoding="utf-8").strip().splitlines()
    except FileNotFoundError:
        raise ConfigError(f"[sso] client_secret_file {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"[sso] client_secret_file {path}: cannot read it: {reason}") from None
    secret = lines[0].strip() if lines else ""
    if not secret:
        raise ConfigError(f"[sso] client_secret_file {path} is empty; put the client secret in it")
    return secret


def _relative_to(settings: Settings, base_dir: Path) -> Settings:
    """Settings whose relative file paths are taken from ``base_dir`` (the config file's)."""
    storage = settings.storage
    if not storage.path.is_absolute():
        settings = replace(settings, storage=replace(storage, path=base_dir / storage.path))
    secret_file = settings.sso.client_secret_file
    if secret_file and not Path(secret_file).is_absolute():
        settings = replace(
            settings, sso=replace(settings.sso, client_secret_file=str(base_dir / secret_file))
        )
    return settings
