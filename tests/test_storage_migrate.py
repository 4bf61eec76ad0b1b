"""Moving an install between the embedded store and PostgreSQL, and backups of either.

``python app.py storage migrate --to TARGET`` copies the directory (ids, ``meta``, member
order), tokens, admin accounts and activity into an empty target and checks the copy;
``backup``/``restore`` write and read one format on both backends.
"""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from app import create_app, main
from server.config import StorageSettings, load_settings
from storage.settings import POSTGRESQL
from tests.admin_support import create_admin, signed_in
from tests.conftest import ScimClient
from tests.pgserver import fresh_database

PREFIX = "/scim/v2"


@pytest.fixture
def dsn() -> str:
    return fresh_database()


def write_config(path: Path, storage: str) -> Path:
    path.write_text(f"[storage]\n{storage}\n", encoding="utf-8")
    return path


def embedded_config(tmp_path: Path, name: str = "embedded") -> Path:
    return write_config(tmp_path / f"{name}.toml", f'path = "{name}-data"')


def postgres_config(tmp_path: Path, dsn: str) -> Path:
    return write_config(tmp_path / "postgres.toml", f'backend = "postgresql"\ndsn = "{dsn}"')


def run(capsys: pytest.CaptureFixture, config: Path, *argv: str) -> tuple[int, str, str]:
    code = main(["--config", str(config), *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def opened() -> Iterator[list[Flask]]:
    apps: list[Flask] = []
    yield apps
    for app in apps:
        app.extensions["proware.backend"].close()


def open_app(config: Path, apps: list[Flask]) -> Flask:
    from server.config import load_settings

    app = create_app(load_settings(config))
    app.config["TESTING"] = True
    apps.append(app)
    return app


def close_app(app: Flask, apps: list[Flask]) -> None:
    """Stop serving: what restore and storage migrate wait for."""
    app.extensions["proware.backend"].close()
    apps.remove(app)


def populate(app: Flask) -> tuple[str, dict]:
    """Users, a group with members in a known order (one shown by the display a client sent
    with it, Entra Q23), a token, an admin; returns the token and the directory as the API
    lists it."""
    services = app.extensions["proware"]
    secret, _ = services.tokens.create("entra")
    services.switch.set(True)
    scim = ScimClient(app.test_client(), secret)
    users = [scim.create_user(f"user{n}@contoso.com", displayName=f"User {n}") for n in range(5)]
    scim.create_group("Sales", members=[users[3]["id"], users[0]["id"], users[4]["id"]])
    add = {"op": "add", "path": "members", "value": [{"value": users[1]["id"], "display": "VP"}]}
    group_id = scim.get("/Groups").get_json()["Resources"][0]["id"]
    assert scim.patch_ops(f"/Groups/{group_id}", add).status_code == 204
    create_admin(app)
    directory = listing(scim)
    assert [m["display"] for m in directory["groups"][0]["members"]] == [
        "User 3",
        "User 0",
        "User 4",
        "VP",
    ]
    return secret, directory


def listing(scim: ScimClient) -> dict:
    users = scim.get("/Users?count=100").get_json()["Resources"]
    groups = scim.get("/Groups?count=100").get_json()["Resources"]
    return {"users": users, "groups": groups}


def test_an_embedded_install_moves_to_postgresql_and_back_whole(
    tmp_path: Path, dsn: str, capsys: pytest.CaptureFixture, opened: list[Flask]
) -> None:
    embedded = embedded_config(tmp_path)
    source = open_app(embedded, opened)
    secret, before = populate(source)
    close_app(source, opened)

    code, out, err = run(capsys, embedded, "storage", "migrate", "--to", dsn)

    assert code == 0, err
    assert "Migrated 5 users, 1 group, 4 memberships" in out
    assert "the copy matches the source" in out
    moved = open_app(postgres_config(tmp_path, dsn), opened)
    scim = ScimClient(moved.test_client(), secret)  # the same token works
    assert listing(scim) == before  # ids, meta (versions, times) and member order kept
    assert signed_in(moved).get("/admin").status_code == 200  # the admin moved too
    events = list(moved.extensions["proware.admin"].audit.newest_first())
    assert [e["operation"] for e in events if e.get("source") != "control panel"].count(
        "create"
    ) == 6
    close_app(moved, opened)

    back = tmp_path / "back-data"
    code, out, err = run(
        capsys, postgres_config(tmp_path, dsn), "storage", "migrate", "--to", str(back)
    )

    assert code == 0, err
    returned = open_app(write_config(tmp_path / "back.toml", f'path = "{back}"'), opened)
    assert listing(ScimClient(returned.test_client(), secret)) == before


def test_a_migration_into_a_database_that_holds_data_changes_nothing(
    tmp_path: Path, dsn: str, capsys: pytest.CaptureFixture, opened: list[Flask]
) -> None:
    target = open_app(postgres_config(tmp_path, dsn), opened)
    secret, before = populate(target)
    close_app(target, opened)
    embedded = embedded_config(tmp_path)
    source = open_app(embedded, opened)
    populate(source)
    close_app(source, opened)

    code, _, err = run(capsys, embedded, "storage", "migrate", "--to", dsn)

    assert code == 1
    assert "already holds" in err
    target = open_app(postgres_config(tmp_path, dsn), opened)
    assert listing(ScimClient(target.test_client(), secret)) == before


def test_migrating_a_served_embedded_install_is_refused(
    tmp_path: Path, dsn: str, capsys: pytest.CaptureFixture, opened: list[Flask]
) -> None:
    """The embedded store belongs to its server: stop it first."""
    embedded = embedded_config(tmp_path)
    populate(open_app(embedded, opened))  # still open: the data directory is locked

    code, _, err = run(capsys, embedded, "storage", "migrate", "--to", dsn)

    assert code == 1
    assert "is in use by another Proware server" in err and "stop it first" in err


def test_migrating_a_database_into_itself_is_refused_saying_so(
    tmp_path: Path, dsn: str, capsys: pytest.CaptureFixture, opened: list[Flask]
) -> None:
    """README order: config.toml pointed at the database first, then ``storage migrate --to``
    the same database. Refused before as "in use by 1 Proware server process(es)", the one
    session listed being the command's own hold on its source."""
    config = postgres_config(tmp_path, dsn)
    close_app(open_app(config, opened), opened)

    code, _, err = run(capsys, config, "storage", "migrate", "--to", dsn)

    assert code == 1
    assert "which is the store this config already uses" in err
    assert "Run it with the config of the install to move" in err
    assert "in use by" not in err


def test_migrating_a_data_directory_into_itself_is_refused_saying_so(
    tmp_path: Path, capsys: pytest.CaptureFixture, opened: list[Flask]
) -> None:
    embedded = embedded_config(tmp_path)
    populate(open_app(embedded, opened))
    close_app(opened[-1], opened)

    code, _, err = run(
        capsys, embedded, "storage", "migrate", "--to", str(tmp_path / "embedded-data")
    )

    assert code == 1
    assert "which is the store this config already uses" in err
    assert "already holds" not in err


def test_connection_strings_name_the_same_database_however_spelled() -> None:
    from storage.postgres.connection import same_database

    url = "postgresql://proware@db.example.com/proware"
    assert same_database(url, "host=db.example.com port=5432 dbname=proware user=other")
    assert same_database(url, "postgresql://proware:secret@db.example.com:5432/proware")
    assert same_database("postgresql:///proware?host=/run/pg", "host=/run/pg dbname=proware")
    assert not same_database(url, "postgresql://proware@db.example.com/proware2")
    assert not same_database(url, "postgresql://proware@db.example.com:5433/proware")
    assert not same_database(url, "postgresql://proware@other.example.com/proware")
    assert not same_database(url, "no such = = string")


def test_a_postgresql_backup_restores_into_postgresql_and_the_embedded_store(
    tmp_path: Path, dsn: str, capsys: pytest.CaptureFixture, opened: list[Flask]
) -> None:
    config = postgres_config(tmp_path, dsn)
    app = open_app(config, opened)
    secret, before = populate(app)
    backup = tmp_path / "backup.json"

    code, out, err = run(capsys, config, "backup", str(backup))
    assert code == 0, err
    assert f"Wrote {backup}: 5 users, 1 group." in out

    scim = ScimClient(app.test_client(), secret)
    scim.create_user("late@contoso.com")  # after the backup: the restore takes it away
    close_app(app, opened)
    code, _, err = run(capsys, config, "restore", str(backup))
    assert code == 0, err
    assert listing(ScimClient(open_app(config, opened).test_client(), secret)) == before

    embedded = embedded_config(tmp_path, "restored")
    code, _, err = run(capsys, embedded, "restore", str(backup))
    assert code == 0, err
    restored = open_app(embedded, opened)
    restored_scim = ScimClient(restored.test_client(), restored_token(restored))
    assert listing(restored_scim) == before


def changed_since_a_backup(
    config: Path, backup: Path, capsys: pytest.CaptureFixture, opened: list[Flask]
) -> tuple[Path, str, dict]:
    """An install populated, backed up to ``backup``, then changed (a user added) and
    stopped; returns its config, its token and the directory a restore would replace."""
    app = open_app(config, opened)
    secret, _ = populate(app)
    assert run(capsys, config, "backup", str(backup))[0] == 0
    ScimClient(app.test_client(), secret).create_user("late@contoso.com")
    replaced = listing(ScimClient(app.test_client(), secret))
    close_app(app, opened)
    return config, secret, replaced


def test_a_restore_into_postgresql_keeps_the_directory_it_replaced(
    tmp_path: Path, dsn: str, capsys: pytest.CaptureFixture, opened: list[Flask]
) -> None:
    """As the embedded store keeps its replaced files (README: "the replaced data is kept"):
    a restore of the wrong backup can be undone. Nothing of the rows was kept before."""
    backups = tmp_path / "backups"
    backups.mkdir()
    config, secret, replaced = changed_since_a_backup(
        postgres_config(tmp_path, dsn), backups / "old.json", capsys, opened
    )

    code, out, err = run(capsys, config, "restore", str(backups / "old.json"))

    assert code == 0, err
    (kept,) = backups.glob("proware.before-restore-*.json")
    assert f"The previous directory is kept in {kept}" in out
    code, _, err = run(capsys, config, "restore", str(kept))  # undone
    assert code == 0, err
    assert listing(ScimClient(open_app(config, opened).test_client(), secret)) == replaced


def test_a_restore_whose_replaced_directory_cannot_be_kept_changes_nothing(
    tmp_path: Path,
    dsn: str,
    capsys: pytest.CaptureFixture,
    opened: list[Flask],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from storage import transfer

    backup = tmp_path / "old.json"
    config, secret, replaced = changed_since_a_backup(
        postgres_config(tmp_path, dsn), backup, capsys, opened
    )

    def disk_full(snapshot: object, path: Path) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(transfer, "write_backup", disk_full)
    code, _, err = run(capsys, config, "restore", str(backup))

    assert code == 1
    assert "nothing was restored" in err and "No space left on device" in err
    assert listing(ScimClient(open_app(config, opened).test_client(), secret)) == replaced


def test_a_damaged_backup_is_refused_and_changes_nothing(
    tmp_path: Path, dsn: str, capsys: pytest.CaptureFixture, opened: list[Flask]
) -> None:
    config = postgres_config(tmp_path, dsn)
    app = open_app(config, opened)
    secret, before = populate(app)
    backup = tmp_path / "backup.json"
    run(capsys, config, "backup", str(backup))
    data = json.loads(backup.read_text())
    first, second = list(data["users"].values())[:2]
    second["userName"] = first["userName"].upper()  # a unique index broken
    backup.write_text(json.dumps(data))
    close_app(app, opened)

    code, _, err = run(capsys, config, "restore", str(backup))

    assert code == 1
    assert "share the unique userName" in err
    assert listing(ScimClient(open_app(config, opened).test_client(), secret)) == before


def restored_token(app: Flask) -> str:
    services = app.extensions["proware"]
    secret, _ = services.tokens.create("after-restore")
    services.switch.set(True)
    return secret


def test_the_target_names_a_database_or_a_directory() -> None:
    from server.storage_commands import target_settings

    assert target_settings("postgresql://proware@db/proware").backend == POSTGRESQL
    assert target_settings("host=db dbname=proware").backend == POSTGRESQL
    assert target_settings("/srv/proware/data") == StorageSettings(path=Path("/srv/proware/data"))


@pytest.mark.parametrize("target", ["mysql://proware@db/proware", "postgresq://db/proware"])
def test_a_url_naming_no_postgresql_database_is_refused_not_taken_for_a_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    """It was migrated into ./mysql:/proware@db/proware, and said so as a success."""
    config = embedded_config(tmp_path)
    monkeypatch.chdir(tmp_path)
    create_app(load_settings(config)).extensions["proware"].repository.close()
    before = sorted(tmp_path.rglob("*"))

    code = main(["--config", str(config), "storage", "migrate", "--to", target])

    captured = capsys.readouterr()
    assert (code, captured.out) == (1, "")
    assert captured.err == (
        f"error: --to {target} is a URL but not a PostgreSQL one (postgresql://user@host/db), "
        "nor a data directory (nothing was changed)\n"
    )
    assert sorted(tmp_path.rglob("*")) == before


# -- servers and commands on one PostgreSQL database ------------------------------------------


def test_restore_into_a_served_database_is_refused_and_changes_nothing(
    tmp_path: Path, dsn: str, capsys: pytest.CaptureFixture, opened: list[Flask]
) -> None:
    """A restore would replace what servers just acknowledged: they hold the database."""
    config = postgres_config(tmp_path, dsn)
    app = open_app(config, opened)
    secret, _ = populate(app)
    backup = tmp_path / "backup.json"
    assert run(capsys, config, "backup", str(backup))[0] == 0  # a backup is fine meanwhile
    scim = ScimClient(app.test_client(), secret)
    scim.create_user("late@contoso.com")
    after = listing(scim)

    code, _, err = run(capsys, config, "restore", str(backup))

    assert code == 1
    assert "is in use by 1 Proware server process(es)" in err
    assert "stop every Proware server on it, on every machine, then run restore again" in err
    # The session holding it: this process, from where, since when; and how it may end.
    assert f"proware server pid {os.getpid()} on {socket.gethostname()}, from 127.0.0.1" in err
    assert re.search(r"since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", err)
    assert "within about 5 s of its last packet" in err and "pg_terminate_backend" in err
    assert listing(scim) == after


def test_migrating_a_served_database_is_refused(
    tmp_path: Path, dsn: str, capsys: pytest.CaptureFixture, opened: list[Flask]
) -> None:
    """Servers writing meanwhile would be missing from the copy."""
    config = postgres_config(tmp_path, dsn)
    populate(open_app(config, opened))
    open_app(config, opened)  # a second process: both are counted

    code, _, err = run(capsys, config, "storage", "migrate", "--to", str(tmp_path / "copy"))

    assert code == 1
    assert "is in use by 2 Proware server process(es)" in err and "storage migrate" in err
    assert not (tmp_path / "copy" / "proware.json").exists()


def test_migrating_into_a_served_database_is_refused(
    tmp_path: Path, dsn: str, capsys: pytest.CaptureFixture, opened: list[Flask]
) -> None:
    open_app(postgres_config(tmp_path, dsn), opened)  # serving the (empty) target
    embedded = embedded_config(tmp_path)
    populate(open_app(embedded, opened))
    close_app(opened[-1], opened)

    code, _, err = run(capsys, embedded, "storage", "migrate", "--to", dsn)

    assert code == 1
    assert "is in use by 1 Proware server process(es)" in err


def test_a_server_does_not_start_while_a_restore_holds_the_database(
    tmp_path: Path, dsn: str
) -> None:
    from server.config import load_settings
    from storage import transfer
    from storage.postgres.serving import DatabaseInUse

    settings = load_settings(postgres_config(tmp_path, dsn))
    with transfer.in_sole_use(settings.storage, "restore"):
        with pytest.raises(DatabaseInUse, match="is being restored or migrated"):
            create_app(settings)
    create_app(settings).extensions["proware.backend"].close()  # once it is done


def test_a_server_that_dies_leaves_no_hold_on_the_database(tmp_path: Path, dsn: str) -> None:
    """The share is a session lock: PostgreSQL drops it with the dead process's session."""
    from storage import transfer
    from storage.errors import StorageError

    config = postgres_config(tmp_path, dsn)
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVE_AND_WAIT, str(config)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "serving"
        settings = StorageSettings(backend=POSTGRESQL, dsn=dsn, pool_size=1)
        with pytest.raises(StorageError, match="in use by 1 Proware server"):
            with transfer.in_sole_use(settings, "restore"):
                pass
    finally:
        server.kill()
        server.wait()
        server.stdout.close()  # type: ignore[union-attr]
    for _ in range(100):  # PostgreSQL notices the closed socket at once, or nearly
        try:
            with transfer.in_sole_use(settings, "restore"):
                return
        except StorageError:
            time.sleep(0.05)
    pytest.fail("the dead server's share of the database was never released")


def test_a_restore_run_as_the_last_holder_leaves_takes_the_database(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock is refused, and by the time its holders are listed the last one is gone
    (PostgreSQL just dropped a vanished server's session): the restore goes ahead instead
    of blaming "another Proware command or server" that no longer exists."""
    import psycopg

    from storage.postgres import serving
    from storage.postgres.connection import Database

    holder = psycopg.connect(dsn, autocommit=True)
    holder.execute("SELECT pg_advisory_lock_shared(%s)", (serving.LOCK_KEY,))
    connect = Database.connect

    def connect_then_leave_at_the_listing(self: Database, purpose: str) -> psycopg.Connection:
        connection = connect(self, purpose)
        execute = connection.execute

        def execute_then_leave(query, params=None):  # type: ignore[no-untyped-def]
            if query is serving._HOLDERS:
                holder.execute("SELECT pg_advisory_unlock_shared(%s)", (serving.LOCK_KEY,))
            return execute(query, params)

        connection.execute = execute_then_leave  # type: ignore[method-assign]
        return connection

    monkeypatch.setattr(Database, "connect", connect_then_leave_at_the_listing)
    database = Database(dsn)
    try:
        with serving.sole_use(database, "restore"):
            pass
    finally:
        database.close()
        holder.close()


def test_the_database_is_free_the_moment_a_restore_is_done(dsn: str) -> None:
    """A server started right after ``restore`` (a script, a unit's ExecStartPre) takes its
    share of the lock at once: closing the command's session alone freed the lock only when
    PostgreSQL's backend had exited, and an immediate try was refused 164 times in 200."""
    import psycopg

    from storage.postgres import serving
    from storage.postgres.connection import Database

    database = Database(dsn)
    try:
        with psycopg.connect(dsn, autocommit=True) as server:
            for _ in range(20):
                with serving.sole_use(database, "restore"):
                    pass
                taken = server.execute(
                    "SELECT pg_try_advisory_lock_shared(%s)", (serving.LOCK_KEY,)
                ).fetchone()
                assert taken == (True,)
                server.execute("SELECT pg_advisory_unlock_shared(%s)", (serving.LOCK_KEY,))
    finally:
        database.close()


_SERVE_AND_WAIT = """
import sys, time
from pathlib import Path
from app import create_app
from server.config import load_settings
create_app(load_settings(Path(sys.argv[1])))
print("serving", flush=True)
time.sleep(60)
"""


# -- what a migration target may hold ---------------------------------------------------------


def test_a_database_holding_only_a_token_is_no_migration_target(
    tmp_path: Path, dsn: str, capsys: pytest.CaptureFixture, opened: list[Flask]
) -> None:
    target = open_app(postgres_config(tmp_path, dsn), opened)
    secret, _ = target.extensions["proware"].tokens.create("target-own")
    close_app(target, opened)
    embedded = embedded_config(tmp_path)
    populate(open_app(embedded, opened))
    close_app(opened[-1], opened)

    code, _, err = run(capsys, embedded, "storage", "migrate", "--to", dsn)

    assert code == 1
    assert "already holds shared document 'control.json'" in err
    target = open_app(postgres_config(tmp_path, dsn), opened)
    # The target's own token still works, and its directory is still empty.
    target.extensions["proware"].switch.set(True)
    assert listing(ScimClient(target.test_client(), secret))["users"] == []


def test_a_directory_holding_an_admin_is_no_migration_target(
    tmp_path: Path, dsn: str, capsys: pytest.CaptureFixture, opened: list[Flask]
) -> None:
    target_config = embedded_config(tmp_path, "target")
    create_admin(open_app(target_config, opened))
    close_app(opened[-1], opened)
    config = postgres_config(tmp_path, dsn)
    populate(open_app(config, opened))
    close_app(opened[-1], opened)

    code, _, err = run(capsys, config, "storage", "migrate", "--to", str(tmp_path / "target-data"))

    assert code == 1
    assert "already holds shared document 'admins.json'" in err
    assert not (tmp_path / "target-data" / "control.json").exists()


@pytest.mark.parametrize("direction", ["to postgresql", "to a directory"])
def test_a_freshly_started_install_is_a_migration_target(
    direction: str, tmp_path: Path, dsn: str, capsys: pytest.CaptureFixture, opened: list[Flask]
) -> None:
    """A server's first start writes a session key (and, embedded, an empty data file)."""
    embedded, postgres = embedded_config(tmp_path), postgres_config(tmp_path, dsn)
    source, target = (embedded, postgres) if direction == "to postgresql" else (postgres, embedded)
    secret, before = populate(open_app(source, opened))
    close_app(opened[-1], opened)
    open_app(target, opened).test_client().get("/admin")
    close_app(opened[-1], opened)
    to = dsn if target is postgres else str(tmp_path / "embedded-data")

    code, out, err = run(capsys, source, "storage", "migrate", "--to", to)

    assert code == 0, err
    assert listing(ScimClient(open_app(target, opened).test_client(), secret)) == before


def test_a_freshly_started_install_with_single_sign_on_settings_is_a_migration_target(
    tmp_path: Path, dsn: str, capsys: pytest.CaptureFixture, opened: list[Flask]
) -> None:
    """Its first start records config.toml's [sso] in sso.json; that is no use of it."""
    source, target = embedded_config(tmp_path), postgres_config(tmp_path, dsn)
    with target.open("a", encoding="utf-8") as config:
        config.write("[sso]\nlocal_sign_in = false\n")
    secret, before = populate(open_app(source, opened))
    close_app(opened[-1], opened)
    close_app(open_app(target, opened), opened)

    code, _, err = run(capsys, source, "storage", "migrate", "--to", dsn)

    assert code == 0, err
    assert listing(ScimClient(open_app(target, opened).test_client(), secret)) == before


# -- the order a user joined its groups -------------------------------------------------------


def joined_out_of_order(app: Flask) -> tuple[str, str, dict]:
    """A user who joined the groups Gamma, Alpha, Beta (made Alpha, Beta, Gamma): its
    ``groups`` and version show that order. Returns the token, its id and what a GET shows."""
    services = app.extensions["proware"]
    secret, _ = services.tokens.create("entra")
    services.switch.set(True)
    scim = ScimClient(app.test_client(), secret)
    user, other = scim.create_user("ann@contoso.com"), scim.create_user("bob@contoso.com")
    groups = [scim.create_group(name)["id"] for name in ("Alpha", "Beta", "Gamma")]
    # The other user first: the groups' member lists then come in the order Alpha, Beta,
    # Gamma, which is not the order the user joined them.
    for member, order in ((other["id"], groups), (user["id"], [groups[2], *groups[:2]])):
        for group_id in order:
            operation = {"op": "add", "path": "members", "value": [{"value": member}]}
            assert scim.patch_ops(f"/Groups/{group_id}", operation).status_code in (200, 204)
    return secret, user["id"], seen(scim, user["id"])


def seen(scim: ScimClient, user_id: str) -> dict:
    response = scim.get(f"/Users/{user_id}")
    return {"etag": response.headers["ETag"], "groups": response.get_json()["groups"]}


@pytest.mark.parametrize("start", ["embedded", "postgresql"])
def test_migrations_and_backups_keep_the_order_users_joined_their_groups(
    start: str, tmp_path: Path, dsn: str, capsys: pytest.CaptureFixture, opened: list[Flask]
) -> None:
    embedded, postgres = embedded_config(tmp_path), postgres_config(tmp_path, dsn)
    source = embedded if start == "embedded" else postgres
    app = open_app(source, opened)
    secret, user_id, before = joined_out_of_order(app)
    assert [group["display"] for group in before["groups"]] == ["Gamma", "Alpha", "Beta"]
    close_app(app, opened)

    # There and back: each copy is checked, and each shows the user as the source did.
    other = postgres if source is embedded else embedded
    to_other = dsn if other is postgres else str(tmp_path / "embedded-data")
    code, out, err = run(capsys, source, "storage", "migrate", "--to", to_other)
    assert code == 0, err
    there = open_app(other, opened)
    assert seen(ScimClient(there.test_client(), secret), user_id) == before
    backup = tmp_path / "backup.json"
    assert run(capsys, other, "backup", str(backup))[0] == 0
    close_app(there, opened)
    back = tmp_path / "back-data"
    code, _, err = run(capsys, other, "storage", "migrate", "--to", str(back))
    assert code == 0, err
    back_config = write_config(tmp_path / "back.toml", f'path = "{back}"')
    assert seen(ScimClient(open_app(back_config, opened).test_client(), secret), user_id) == before
    close_app(opened[-1], opened)

    # A backup restores into either backend with the order kept.
    for config in (postgres, embedded_config(tmp_path, "restored")):
        code, _, err = run(capsys, config, "restore", str(backup))
        assert code == 0, err
        restored = open_app(config, opened)
        assert seen(ScimClient(restored.test_client(), restored_token(restored)), user_id) == before
        close_app(restored, opened)


def test_an_embedded_store_keeps_the_order_users_joined_their_groups_across_a_restart(
    tmp_path: Path, opened: list[Flask]
) -> None:
    """The data file records it (a compaction wrote the member lists only, and a restart
    listed each user's groups in the order of those lists)."""
    config = embedded_config(tmp_path)
    app = open_app(config, opened)
    secret, user_id, before = joined_out_of_order(app)
    app.extensions["proware"].repository.compact()
    close_app(app, opened)

    assert seen(ScimClient(open_app(config, opened).test_client(), secret), user_id) == before


def test_membership_order_gives_each_group_and_each_user_its_order() -> None:
    from storage.postgres.transfer import membership_order

    members = {"alpha": ["ann", "bob"], "beta": ["bob", "ann"], "gamma": ["ann"]}
    joined = {"ann": ["gamma", "beta", "alpha"], "bob": ["beta", "alpha"]}

    pairs = membership_order(members, joined)

    assert sorted(pairs) == sorted((g, u) for g, users in members.items() for u in users)
    for group_id, users in members.items():
        assert [u for g, u in pairs if g == group_id] == users
    for user_id, groups in joined.items():
        assert [g for g, u in pairs if u == user_id] == groups


def test_a_copy_that_lists_a_users_groups_in_another_order_does_not_match() -> None:
    from storage.errors import StorageError
    from storage.journal.snapshot import FORMAT, Snapshot
    from storage.transfer import _check_directory

    members = {"alpha": {"ann": None}, "beta": {"ann": None}}
    source = Snapshot(FORMAT, members=members, groups={"ann": ["beta", "alpha"]})
    copy = Snapshot(FORMAT, members=members, groups={"ann": ["alpha", "beta"]})

    with pytest.raises(StorageError, match="groups of User 'ann' in another order"):
        _check_directory(source, copy)
    _check_directory(source, source)
