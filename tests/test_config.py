"""Settings from TOML: the example file, defaults, and refusals that name the key at fault."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from server.config import (
    SSO_SECRET_ENV,
    STORAGE_DSN_ENV,
    ConfigError,
    ScimSettings,
    ServerSettings,
    Settings,
    SsoSettings,
    StorageSettings,
    from_mapping,
    load_settings,
    read_client_secret,
    request_threads,
    resolve_config_path,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- the example file cannot rot ------------------------------------------------------------


def test_the_example_config_equals_the_built_in_defaults() -> None:
    loaded = load_settings(EXAMPLE)

    expected = dataclasses.replace(
        Settings(),
        storage=StorageSettings(path=EXAMPLE.parent / "data"),
        source=str(EXAMPLE),
    )
    assert loaded == expected


def test_the_example_config_lists_every_key() -> None:
    raw = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    sections = {f.name for f in dataclasses.fields(Settings) if f.name != "source"}

    assert set(raw) == sections
    for name, values in raw.items():
        section = getattr(Settings(), name)
        assert set(values) == {f.name for f in dataclasses.fields(section)}, name


def test_every_example_key_has_a_comment() -> None:
    """Each key is documented (waitress adjustments.py style): a comment line precedes it."""
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            assert lines[index - 1].startswith("#"), line


# -- defaults and paths --------------------------------------------------------------------


def test_no_file_means_the_built_in_defaults() -> None:
    settings = load_settings(None)

    assert settings == Settings()
    assert settings.source == "built-in defaults"
    assert settings.tenant_url() == "http://127.0.0.1:8000/scim/v2"


def test_an_empty_file_means_the_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, ""))

    assert settings.server == ServerSettings()
    assert settings.scim == ScimSettings()


def test_a_relative_storage_path_is_resolved_against_the_config_files_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir = tmp_path / "etc" / "proware"
    config_dir.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)

    settings = load_settings(write(config_dir, '[storage]\npath = "var/data"\n'))

    assert settings.storage.path == config_dir / "var" / "data"


def test_an_absolute_storage_path_is_kept(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, f'[storage]\npath = "{tmp_path / "abs"}"\n'))

    assert settings.storage.path == tmp_path / "abs"


def test_values_are_read(tmp_path: Path) -> None:
    settings = load_settings(
        write(
            tmp_path,
            '[server]\nhost = "0.0.0.0"\nport = 9000\npublic_url = "https://p.example.com/x"\n'
            'trusted_proxy_headers = ["x-forwarded-for"]\n'
            '[scim]\nprefix = "/scim"\nmax_results = 50\n'
            '[log]\nlevel = "debug"\naccess_log = false\n',
        )
    )

    assert settings.server.port == 9000
    assert settings.server.trusted_proxy_headers == ["x-forwarded-for"]
    assert settings.scim.max_results == 50
    assert settings.log.access_log is False
    assert settings.tenant_url() == "https://p.example.com/x/scim"
    assert settings.local_url == "http://127.0.0.1:9000"


@pytest.mark.parametrize(
    ("host", "local_url"),
    [
        pytest.param("127.0.0.1", "http://127.0.0.1:8000", id="loopback"),
        pytest.param("0.0.0.0", "http://127.0.0.1:8000", id="every-interface"),
        pytest.param("::1", "http://[::1]:8000", id="ipv6"),
    ],
)
def test_local_url(host: str, local_url: str) -> None:
    assert Settings(server=ServerSettings(host=host)).local_url == local_url


def test_the_tenant_url_prefers_public_url_over_the_request() -> None:
    public = Settings(server=ServerSettings(public_url="https://p.example.com/"))

    assert public.tenant_url("http://10.0.0.1:8000/") == "https://p.example.com/scim/v2"
    assert Settings().tenant_url("http://h:1/") == "http://h:1/scim/v2"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 1),
        ('[storage]\nbackend = "postgresql"\ndsn = "host=db"\n', 4),
        ("[server]\nthreads = 2\n", 2),
        ('[server]\nthreads = 1\n[storage]\nbackend = "postgresql"\ndsn = "host=db"\n', 1),
    ],
    ids=["embedded", "postgresql", "set", "set-with-postgresql"],
)
def test_threads_are_chosen_for_the_store_unless_set(
    tmp_path: Path, text: str, expected: int
) -> None:
    """One request at a time is fastest on the embedded store; with PostgreSQL requests wait
    on the database, and four threads fill the wait."""
    assert request_threads(load_settings(write(tmp_path, text))) == expected


# -- refusals name what is wrong --------------------------------------------------------------

BAD = [
    pytest.param("[sever]\nport = 1\n", "unknown section [sever]", id="unknown-section"),
    pytest.param("[server]\nprot = 80\n", "unknown key [server] prot", id="unknown-key"),
    pytest.param("server = 1\n", "[server] must be a table", id="section-not-a-table"),
    pytest.param('[server]\nport = "80"\n', "[server] port must be an integer", id="port-string"),
    pytest.param("[server]\nport = true\n", "[server] port must be an integer", id="port-bool"),
    pytest.param("[server]\nport = 0\n", "[server] port must be 1-65535", id="port-zero"),
    pytest.param("[server]\nport = 65536\n", "[server] port must be 1-65535", id="port-high"),
    pytest.param("[server]\nhost = 127\n", "[server] host must be a string", id="host-int"),
    pytest.param("[server]\nthreads = -1\n", "[server] threads must be 0", id="threads"),
    pytest.param(
        "[server]\nmax_body_bytes = 10\n", "[server] max_body_bytes", id="tiny-body-limit"
    ),
    pytest.param(
        '[server]\npublic_url = "proware.example.com"\n',
        "[server] public_url must be an http(s) URL",
        id="public-url-no-scheme",
    ),
    pytest.param(
        '[server]\npublic_url = "ftp://proware.example.com"\n',
        "[server] public_url",
        id="public-url-ftp",
    ),
    pytest.param(
        '[server]\npublic_url = "https://p.example.com/?x=1"\n',
        "[server] public_url",
        id="public-url-query",
    ),
    pytest.param(
        "[server]\ntrusted_proxy_headers = [1]\n",
        "[server] trusted_proxy_headers must be a list of strings",
        id="headers-not-strings",
    ),
    pytest.param(
        '[server]\ntrusted_proxy_headers = ["x-forwarded-bogus"]\n',
        "[server] trusted_proxy_headers: unknown header 'x-forwarded-bogus' (known: forwarded,",
        id="headers-unknown",
    ),
    pytest.param(
        "[server]\ntrusted_proxy_count = 0\n",
        "[server] trusted_proxy_count must be at least 1, not 0",
        id="proxy-count",
    ),
    pytest.param('[scim]\nprefix = "scim"\n', "[scim] prefix", id="prefix-no-slash"),
    pytest.param('[scim]\nprefix = "/scim/"\n', "[scim] prefix", id="prefix-trailing-slash"),
    pytest.param("[scim]\nmax_results = 0\n", "[scim] max_results", id="max-results"),
    pytest.param("[scim]\nmax_filter_length = 10\n", "[scim] max_filter_length", id="filter"),
    pytest.param('[storage]\npath = ""\n', "[storage] path must be a non-empty", id="empty-path"),
    pytest.param(
        '[storage]\nbackend = "mysql"\n', "[storage] backend must be one of", id="backend"
    ),
    pytest.param(
        '[storage]\nbackend = "postgresql"\n', '[storage] backend = "postgresql" needs', id="no-dsn"
    ),
    pytest.param(
        '[storage]\ndsn = "postgresql://db/proware"\n',
        "[storage] dsn is set but backend is 'tinydb'",
        id="dsn-without-backend",
    ),
    pytest.param(
        '[storage]\nbackend = "postgresql"\ndsn = "x"\npool_size = 0\n',
        "[storage] pool_size must be at least 1",
        id="pool-size",
    ),
    pytest.param(
        '[storage]\nbackend = "postgresql"\ndsn = "x"\ntimeout_seconds = 0\n',
        "[storage] timeout_seconds must be at least 1",
        id="timeout",
    ),
    pytest.param('[log]\nlevel = "LOUD"\n', "[log] level", id="log-level"),
    pytest.param('[log]\naccess_log = "yes"\n', "[log] access_log must be true", id="bool"),
    pytest.param("[server\n", "not valid TOML", id="not-toml"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_a_bad_config_fails_with_a_message_naming_it(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)

    with pytest.raises(ConfigError) as raised:
        load_settings(path)

    assert message in str(raised.value)
    assert str(raised.value).startswith(str(path))


def test_a_missing_file_fails_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_settings(tmp_path / "absent.toml")


def test_an_unreadable_file_fails_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe\x00")

    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(path)


def test_from_mapping_without_a_base_dir_keeps_a_relative_path() -> None:
    settings = from_mapping({"storage": {"path": "rel"}}, source="test")

    assert settings.storage.path == Path("rel")


# -- which file ----------------------------------------------------------------------------


def test_resolve_prefers_the_flag_then_the_environment_then_config_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PROWARE_CONFIG", raising=False)
    assert resolve_config_path(None) is None
    write(tmp_path, "")
    assert resolve_config_path(None) == Path("config.toml")
    monkeypatch.setenv("PROWARE_CONFIG", "/etc/proware.toml")
    assert resolve_config_path(None) == Path("/etc/proware.toml")
    assert resolve_config_path("mine.toml") == Path("mine.toml")


# -- [sso] ---------------------------------------------------------------------------------

SSO_OK = """
[sso]
enabled = true
issuer = "https://login.microsoftonline.com/0000-tenant/v2.0"
client_id = "client-1"
client_secret_file = "secret.txt"
admin_group = "Proware Admins"
"""


def test_sso_is_off_by_default() -> None:
    assert Settings().sso == SsoSettings()
    assert SsoSettings().enabled is False
    assert SsoSettings().scopes == "openid profile email"
    assert SsoSettings().username_claim == "preferred_username"
    assert SsoSettings().local_sign_in is True


def test_sso_secret_file_is_relative_to_the_config_file(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, SSO_OK))

    assert settings.sso.enabled
    assert settings.sso.client_secret_file == str(tmp_path / "secret.txt")


def test_enabling_sso_without_its_keys_names_each_missing_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SSO_SECRET_ENV, raising=False)
    with pytest.raises(ConfigError) as raised:
        load_settings(write(tmp_path, "[sso]\nenabled = true\n"))

    message = str(raised.value)
    for key in ("issuer", "client_id", "admin_group", "client_secret_file"):
        assert f"[sso] {key}" in message


def test_the_secret_environment_variable_stands_in_for_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SSO_SECRET_ENV, "from-the-environment")
    text = SSO_OK.replace('client_secret_file = "secret.txt"\n', "")
    settings = load_settings(write(tmp_path, text))

    assert read_client_secret(settings.sso) == "from-the-environment"


@pytest.mark.parametrize(
    ("issuer", "accepted"),
    [
        ("https://login.microsoftonline.com/t/v2.0", True),
        ("http://127.0.0.1:9000/oidc", True),
        ("http://login.example.com/t/v2.0", False),
        ("https://login.example.com/t?x=1", False),
        ("login.microsoftonline.com/t/v2.0", False),
    ],
)
def test_the_issuer_must_be_https_except_on_loopback(
    tmp_path: Path, issuer: str, accepted: bool
) -> None:
    path = write(
        tmp_path, SSO_OK.replace("https://login.microsoftonline.com/0000-tenant/v2.0", issuer)
    )
    if accepted:
        assert load_settings(path).sso.issuer == issuer
    else:
        with pytest.raises(ConfigError, match=r"\[sso\] issuer must be an https URL"):
            load_settings(path)


def test_scopes_without_openid_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must include 'openid'"):
        load_settings(write(tmp_path, SSO_OK + 'scopes = "profile email"\n'))


def test_an_unknown_sso_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key \[sso\] client_secret "):
        load_settings(write(tmp_path, '[sso]\nclient_secret = "oops"\n'))


def test_reading_the_secret_names_the_file_never_its_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SSO_SECRET_ENV, raising=False)
    settings = load_settings(write(tmp_path, SSO_OK))
    with pytest.raises(ConfigError, match="secret.txt: no such file"):
        read_client_secret(settings.sso)

    (tmp_path / "secret.txt").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        read_client_secret(settings.sso)

    (tmp_path / "secret.txt").write_text("s3cr3t-value\nignored\n")
    assert read_client_secret(settings.sso) == "s3cr3t-value"


def test_the_dsn_environment_variable_overrides_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A password in the DSN need not sit in the config file."""
    monkeypatch.setenv(STORAGE_DSN_ENV, "postgresql://proware:s3cret@db/proware")
    path = write(tmp_path, '[storage]\nbackend = "postgresql"\n')

    assert load_settings(path).storage.dsn == "postgresql://proware:s3cret@db/proware"
