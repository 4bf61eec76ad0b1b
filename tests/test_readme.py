"""README.md against the code: the Configuration table, the Operator commands table, the
files it names and the limits it states. An admin follows these literally; a default, an
option or a number that drifted is a wrong instruction.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import tomllib
from dataclasses import fields, is_dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from admin.accounts import MIN_DISTINCT_CHARACTERS, MIN_PASSWORD_LENGTH, LockoutPolicy
from admin.sessions import SessionPolicy
from admin.setup_link import LINK_LIFETIME
from scim.tokens import USE_SAVE_INTERVAL, TokenStore
from server import httpserver
from server.cli import build_parser
from server.config import Settings, from_mapping
from storage.controlfile import ControlFile
from storage.failures import MAX_KEYS
from storage.postgres.connection import Database
from storage.postgres.documents import STAMP_TTL
from storage.retry import ATTEMPTS, BACKOFF
from storage.state import CHUNK

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
TEXT = " ".join(README.split())  # prose as one line: a phrase may wrap anywhere


def _section(title: str) -> str:
    """The README's ``## title`` section, up to the next ``## ``."""
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else len(README)]


def _table_rows(section: str) -> list[list[str]]:
    """The cells of a Markdown table's body rows (an escaped ``\\|`` stays in its cell)."""
    rows = []
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith(("| key ", "| command ", "| ---")):
            rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


# -- Configuration -----------------------------------------------------------------------------


def _shown(default: Any) -> str:
    """A default as the table writes it: TOML's spelling, "" for empty."""
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, list):
        return json.dumps(default)  # ["a", "b"]: a TOML array too
    return str(default)


def _documented_defaults() -> dict[tuple[str, str], str]:
    """(section, key) -> the default the Configuration table shows."""
    documented = {}
    for keys_cell, defaults_cell, _ in _table_rows(_section("Configuration")):
        keys = re.findall(r"`([^`]+)`", keys_cell)
        section, first = re.fullmatch(r"\[(\w+)\] (\w+)", keys[0]).groups()  # type: ignore[union-attr]
        defaults = [quoted or "" for quoted in re.findall(r"`([^`]*)`|\bempty\b", defaults_cell)]
        if len(defaults) == 1:  # "`issuer`, `client_id` | empty": one for all
            defaults *= len(keys)
        assert len(defaults) == len(keys), f"{keys_cell}: {len(keys)} keys, defaults {defaults}"
        for key, default in zip([first, *keys[1:]], defaults, strict=True):
            documented[(section, key)] = default
    return documented


def _code_defaults() -> dict[tuple[str, str], str]:
    """(section, key) -> the default of ``Settings``, spelled as the table does."""
    sections = {f.name: getattr(Settings(), f.name) for f in fields(Settings)}
    return {
        (section, f.name): _shown(getattr(values, f.name))
        for section, values in sections.items()
        if is_dataclass(values)
        for f in fields(values)
    }


def test_the_configuration_table_shows_every_key_with_the_code_default() -> None:
    """config.example.toml is checked against the same defaults in test_config.py."""
    assert _documented_defaults() == _code_defaults()


# -- Operator commands -------------------------------------------------------------------------

# A value for each placeholder the table uses, to run the command line's parser on it.
SAMPLES = {
    "NAME": "entra",
    "DAYS": "365",
    "USERNAME": "alice",
    "N": "2",
    "PATH": "/backups/proware.json",
    "TARGET": "postgresql://proware@db/proware",
}


def _documented_commands() -> list[str]:
    """Each ``python app.py ...`` synopsis of the Operator commands table, alternatives
    (``enable\\|disable``) spelled out one by one."""
    commands = []
    for cell, _ in _table_rows(_section("Operator commands")):
        # "`python app.py admin create USERNAME` / `admin reset-password USERNAME`"
        for synopsis in re.findall(r"`(?:python app\.py )?([^`]+)`", cell):
            words = synopsis.replace("\\|", "|").split()
            [choices] = [w for w in words if "|" in w] or [""]
            for choice in choices.split("|") if choices else [""]:
                commands.append(" ".join(choice if w == choices else w for w in words))
    return commands


def _leaf_parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Every runnable command of the parser, by its words ("token", "create")."""
    [*subparsers] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers:
        return {path: parser}
    found = {}
    for name, child in subparsers[0].choices.items():
        found.update(_leaf_parsers(child, (*path, name)))
    return found


LEAVES = _leaf_parsers(build_parser())


def _leaf_of(words: list[str]) -> tuple[str, ...]:
    for size in (2, 1):
        if tuple(words[:size]) in LEAVES:
            return tuple(words[:size])
    raise AssertionError(f"no command {' '.join(words)!r}")


_SHELL_BLOCKS = re.findall(r"```sh\n(.*?)```", README, re.S)


@pytest.mark.parametrize("block", _SHELL_BLOCKS, ids=lambda block: block.split("\n")[0][:40])
def test_each_shell_block_sets_the_variables_it_uses(block: str) -> None:
    """Pasted as written, a block must not send an empty ``$TOKEN`` (curl's 401 "uses the
    'Bearer' scheme; expected 'Bearer <token>'" was all the first screen's lines got)."""
    used = set(re.findall(r"\$\{?([A-Za-z_]\w*)", block))
    assigned = set(re.findall(r"^(?:export )?([A-Za-z_]\w*)=", block, re.M))
    assert used <= assigned, f"{sorted(used - assigned)} used but never set in:\n{block}"


@pytest.mark.parametrize("synopsis", _documented_commands())
def test_each_documented_command_runs_as_written(synopsis: str) -> None:
    """The parser takes the table's line, every optional part given."""
    argv = [SAMPLES.get(w, w) for w in synopsis.replace("[", "").replace("]", "").split()]

    build_parser().parse_args(argv)  # a usage error is SystemExit: the test fails


@pytest.mark.parametrize("synopsis", _documented_commands())
def test_each_documented_command_reads_like_its_help(synopsis: str) -> None:
    """What the table shows (NAME, --follow, ...) is what ``--help`` shows."""
    words = synopsis.split()
    usage = " ".join(LEAVES[_leaf_of(words)].format_usage().split())
    usage = re.sub(r"\{([^}]*)\}", lambda m: m.group(1).replace(",", "|"), usage)
    for word in words[len(_leaf_of(words)) :]:
        token = word.strip("[]")
        if token.isupper() or token.startswith("-"):
            assert re.search(rf"(?<![\w-]){re.escape(token)}(?![\w-])", usage), (token, usage)


def test_the_table_documents_every_command() -> None:
    documented = {_leaf_of(c.split()) for c in _documented_commands()}

    assert documented == set(LEAVES)


# -- Layout and paths --------------------------------------------------------------------------


def _named_paths() -> list[str]:
    """Every project path README names in backticks (``storage/state.py``), and each file and
    directory of the Layout block, under the top-level directory whose lines name it."""
    named = set(re.findall(r"`((?:app|server|admin|scim|storage|bench|tests)/[\w./*-]*)`", README))
    block = _section("Layout").split("```")[1]
    top = ""
    for line in block.splitlines():
        if re.match(r"\S", line):  # a top-level entry: app.py, server/, ...
            top = line.split()[0] if line.split()[0].endswith("/") else ""
        for name in re.findall(r"(?<![\w/])([\w*]+\.py|\w+/)(?=[\s,):]|$)", line):
            named.add(name if name == top else top + name)
    return sorted(named)


def _default(function: Any, name: str) -> Any:
    """The default value of ``function``'s parameter ``name``."""
    return inspect.signature(function).parameters[name].default


@pytest.mark.parametrize("name", _named_paths())
def test_every_path_the_readme_names_exists(name: str) -> None:
    assert list(ROOT.glob(name.rstrip("/"))), f"README names {name}, which is not there"


# -- Limits ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phrase", "holds"),
    [
        pytest.param(
            "a server saves a token's uses at most once a minute",
            lambda: USE_SAVE_INTERVAL == timedelta(minutes=1),
            id="token-use-saves",
        ),
        pytest.param(
            "one-time setup link (it works for an hour, to create one admin)",
            lambda: LINK_LIFETIME == timedelta(hours=1),
            id="setup-link",
        ),
        pytest.param(
            "A password has at least 12 characters, at least 4 different ones",
            lambda: (MIN_PASSWORD_LENGTH, MIN_DISTINCT_CHARACTERS) == (12, 4),
            id="password",
        ),
        pytest.param(
            "end after 30 minutes idle",
            lambda: SessionPolicy().idle == timedelta(minutes=30),
            id="session-idle",
        ),
        pytest.param(
            "or 12 hours after sign-in, whichever comes first",
            lambda: SessionPolicy().max_age == timedelta(hours=12),
            id="session-max-age",
        ),
        pytest.param(
            "five failed sign-ins lock an account for 15 minutes",
            lambda: (
                (LockoutPolicy().max_failures, LockoutPolicy().duration)
                == (5, timedelta(minutes=15))
            ),
            id="lockout",
        ),
        pytest.param(
            "forgets a name's failures after 30 minutes and keeps at most 10,000 names",
            lambda: (
                LockoutPolicy().window + LockoutPolicy().duration == timedelta(minutes=30)
                and MAX_KEYS == 10_000
            ),
            id="unknown-names",
        ),
        pytest.param(
            "each process trusts the shared documents' version for at most 0.25 s",
            lambda: STAMP_TTL == 0.25,
            id="propagation",
        ),
        pytest.param(
            "up to three runs in all, with a pause of up to 50 and then 100 ms",
            lambda: (ATTEMPTS, BACKOFF, BACKOFF * 2) == (3, 0.05, 0.1),
            id="retries",
        ),
        pytest.param("in chunks of 64 entries", lambda: CHUNK == 64, id="state-chunks"),
        pytest.param(
            "ends its session after 30 s idle in its transaction "
            "(`idle_in_transaction_session_timeout`, set on each pooled session): until then "
            "other processes' writes to those users or groups answer `503` after 10 s each",
            lambda: (
                (_default(Database, "idle_timeout"), _default(Database, "lock_timeout")) == (30, 10)
            ),
            id="frozen-process",
        ),
        pytest.param(
            "drops what the proxy still sends of it, for up to 5 seconds",
            lambda: httpserver.LINGER_SECONDS == 5,
            id="linger",
        ),
    ],
)
def test_each_limit_the_readme_states_is_the_code_s(phrase: str, holds: Any) -> None:
    assert phrase in TEXT
    assert holds()


def test_a_token_is_as_long_as_the_readme_says(tmp_path: Path) -> None:
    secret, _ = TokenStore(ControlFile(tmp_path / "control.json")).create("entra")

    assert "Tokens are 256-bit random, URL-safe, 46 characters" in TEXT
    assert len(secret) == 46


# -- Behind a TLS reverse proxy ------------------------------------------------------------------

_PROXY = _section("Behind a TLS reverse proxy")


def test_the_nginx_block_sends_the_forwarded_headers_proware_honours() -> None:
    """Each header of trusted_proxy_headers' default is set, from the host and port used."""
    nginx = re.search(r"```nginx\n(.*?)```", _PROXY, re.S).group(1)  # type: ignore[union-attr]
    sent = dict(re.findall(r"proxy_set_header (\S+) (\S+);", nginx))

    assert {name.lower() for name in sent if name.startswith("X-")} == set(
        Settings().server.trusted_proxy_headers
    )
    assert sent["X-Forwarded-Host"] == sent["Host"] == "$http_host"  # $host drops the port


def test_the_nginx_body_limit_is_above_proware_s() -> None:
    """Else nginx refuses a body over max_body_bytes with its own HTML page, not a SCIM 413."""
    size = re.search(r"client_max_body_size (\d+)m;", _PROXY)
    assert size, "the nginx block sets no client_max_body_size (nginx's default is 1m)"
    assert int(size.group(1)) * 1024 * 1024 > Settings().server.max_body_bytes


def test_the_proxy_section_s_config_loads() -> None:
    block = re.search(r"```toml\n(.*?)```", _PROXY, re.S).group(1)  # type: ignore[union-attr]
    settings = from_mapping(tomllib.loads(block), source="README")

    assert settings.server.trusted_proxy == "127.0.0.1"
    assert settings.server.public_url == "https://proware.example.com"


# -- Test Connection through ngrok ---------------------------------------------------------------

_NGROK = _section("Test Connection through ngrok")


def test_the_ngrok_section_s_config_trusts_the_agent_as_well_as_setting_public_url() -> None:
    """Without trusted_proxy every request (Test Connection included) shows 127.0.0.1 in the
    access log, the Connection status and the activity, and the session cookie is not Secure."""
    block = re.search(r"```toml\n(.*?)```", _NGROK, re.S).group(1)  # type: ignore[union-attr]
    settings = from_mapping(tomllib.loads(block), source="README")

    assert settings.server.trusted_proxy == "127.0.0.1"
    assert settings.server.public_url == "https://<your-subdomain>.ngrok-free.app"


# -- Running as a systemd service ----------------------------------------------------------------


def _unit() -> dict[str, dict[str, str]]:
    """The README's proware.service, section -> key -> value (comments left out)."""
    block = re.search(r"```ini\n(.*?)```", _section("Running as a systemd service"), re.S)
    assert block is not None
    unit: dict[str, dict[str, str]] = {}
    for line in block.group(1).splitlines():
        if line.startswith("["):
            section = unit.setdefault(line.strip("[]"), {})
        elif "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            section[key] = value
    return unit


def test_the_unit_waits_for_the_network_it_orders_itself_after() -> None:
    """After= alone orders, it does not pull network-online.target in (systemd.special)."""
    unit = _unit()["Unit"]

    assert unit["After"] == unit["Wants"] == "network-online.target"


def test_the_unit_restarts_slowly_enough_not_to_hit_systemds_start_limit() -> None:
    """systemd's defaults (RestartSec=100ms, 5 starts in 10 s) gave up on a server whose
    start failed in 0.5 s (PostgreSQL not up yet: connection refused)."""
    service = _unit()["Service"]

    assert service["Restart"] == "on-failure"
    assert float(service["RestartSec"]) * 5 > 10
