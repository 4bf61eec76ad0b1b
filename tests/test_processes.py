"""Several server processes on one socket: ``[server] processes`` and ``serve --processes N``.

The key and the flag are checked like every setting: at least 1, and 1 with the embedded store.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from server.config import ConfigError, load_settings, with_processes


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


POSTGRESQL_CONFIG = '[storage]\nbackend = "postgresql"\ndsn = "postgresql://proware@db/proware"\n'


# -- the key and the flag ------------------------------------------------------------------


def test_one_process_is_the_default(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, "")).server.processes == 1


def test_several_processes_are_accepted_with_the_postgresql_store(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, POSTGRESQL_CONFIG + "[server]\nprocesses = 4\n"))

    assert settings.server.processes == 4


@pytest.mark.parametrize("count", [0, -2])
def test_fewer_than_one_process_is_refused(tmp_path: Path, count: int) -> None:
    path = write(tmp_path, POSTGRESQL_CONFIG + f"[server]\nprocesses = {count}\n")

    with pytest.raises(ConfigError, match=r"\[server\] processes must be at least 1"):
        load_settings(path)


def test_several_processes_with_the_embedded_store_are_refused_naming_the_fix(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "[server]\nprocesses = 2\n")

    with pytest.raises(ConfigError) as refused:
        load_settings(path)

    message = str(refused.value)
    assert message.startswith(f"{path}: [server] processes = 2 needs the PostgreSQL store")
    assert 'set [storage] backend = "postgresql"' in message
    assert "Outgrowing one process" in message
    assert "\n" not in message


def test_the_flag_overrides_the_key_and_is_checked_as_it_is(tmp_path: Path) -> None:
    postgresql = load_settings(write(tmp_path, POSTGRESQL_CONFIG))
    embedded = load_settings(None)

    assert with_processes(postgresql, 3).server.processes == 3
    assert with_processes(embedded, 1) == embedded
    with pytest.raises(ConfigError, match=r"--processes 2 needs the PostgreSQL store"):
        with_processes(embedded, 2)
    with pytest.raises(ConfigError, match=r"--processes must be at least 1"):
        with_processes(postgresql, 0)
