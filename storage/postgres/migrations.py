"""The PostgreSQL schema, as numbered migrations applied in order when a process opens it.

Each migration runs once per database: :func:`apply_migrations` takes a transaction-scoped
advisory lock first, so processes starting together apply each migration exactly once (the
others wait, then find it recorded), and applies every pending migration plus its record in
``proware_schema_migrations`` in one transaction, so a failure leaves the schema as it was.
A database recorded at a version this code does not know (written by a newer Proware) is
refused with :class:`storage.errors.CorruptStore` and left unchanged.

Never edit a migration that has shipped: add the next number.

The tables (migration 1; migration 2 gives ``resources`` room for updated row versions):

- ``resources``: one row per document. ``seq`` is the insertion order (listings, scans and
  sort ties follow it; a replace keeps it). ``folded`` is ``doc`` with every string value
  casefolded in Python (``str.casefold``) at write time, so that case-insensitive
  comparisons and sorts in SQL agree exactly with Python's, which ``lower()`` would not
  ("ß" folds to "ss").
- ``resource_keys``: the values of the indexed fields (:class:`storage.repository.Index`),
  folded in Python by ``Index.key``. The partial unique index makes PostgreSQL itself refuse
  a second holder of a unique value, so two processes can never both win.
- ``members``: group -> user, ``seq`` giving the member order. The ``*_kind`` columns exist
  only for the foreign keys: a membership never outlives its group or its user.
- ``activity``: the activity events, written by the transaction they describe.
- ``documents``: small JSON documents every process shares (tokens, the switches, admin
  accounts, sign-outs); ``version`` goes up by one per update.
- ``secrets``: random keys created once and shared by every process (the control panel's
  session signing key), apart from the documents so that nothing lists them by accident.
- ``failures`` (migration 3): recent failed sign-ins of names that are no account, one row
  per name's keyed digest, bounded in rows and time (:mod:`storage.postgres.failures`).
- ``activity_about`` (migration 4): the events naming one resource (its ``id``), newest
  first.
"""

from __future__ import annotations

from typing import NamedTuple

import psycopg

from storage.errors import CorruptStore

# pg_advisory_xact_lock key: "proware" in ASCII, so it is recognisable in pg_locks.
MIGRATION_LOCK = 0x70726F77617265


class Migration(NamedTuple):
    """One step of the schema: applied once, in order of ``number``."""

    number: int
    name: str
    sql: str


MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "resources, index keys, memberships, activity, shared documents and secrets",
        """
        CREATE TABLE resources (
            kind text NOT NULL,
            id text NOT NULL,
            seq bigint GENERATED ALWAYS AS IDENTITY,
            version bigint NOT NULL,
            doc jsonb NOT NULL,
            folded jsonb NOT NULL,
            PRIMARY KEY (kind, id)
        );
        CREATE UNIQUE INDEX resources_in_order ON resources (kind, seq);

        CREATE TABLE resource_keys (
            kind text NOT NULL,
            field text NOT NULL,
            id text NOT NULL,
            key text NOT NULL,
            is_unique boolean NOT NULL,
            seq bigint GENERATED ALWAYS AS IDENTITY,
            PRIMARY KEY (kind, id, field),
            FOREIGN KEY (kind, id) REFERENCES resources (kind, id) ON DELETE CASCADE
        );
        CREATE UNIQUE INDEX resource_keys_unique ON resource_keys (kind, field, key)
            WHERE is_unique;
        CREATE INDEX resource_keys_lookup ON resource_keys (kind, field, key, seq);

        CREATE TABLE members (
            group_id text NOT NULL,
            user_id text NOT NULL,
            seq bigint GENERATED ALWAYS AS IDENTITY,
            group_kind text NOT NULL DEFAULT 'Group' CHECK (group_kind = 'Group'),
            user_kind text NOT NULL DEFAULT 'User' CHECK (user_kind = 'User'),
            PRIMARY KEY (group_id, user_id),
            FOREIGN KEY (group_kind, group_id) REFERENCES resources (kind, id)
                ON DELETE CASCADE,
            FOREIGN KEY (user_kind, user_id) REFERENCES resources (kind, id)
                ON DELETE CASCADE
        );
        CREATE INDEX members_in_order ON members (group_id, seq);
        CREATE INDEX members_by_user ON members (user_id, seq);

        CREATE TABLE activity (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            event jsonb NOT NULL
        );

        CREATE TABLE documents (
            name text PRIMARY KEY,
            body jsonb NOT NULL,
            version bigint NOT NULL
        );

        CREATE TABLE secrets (
            name text PRIMARY KEY,
            value bytea NOT NULL
        );
        """,
    ),
    # Every member change gives its group a new version (a new row version), and a big group
    # gets hundreds: left for autovacuum, they made reading a user's groups cost 1-2 ms and
    # hundreds of buffers at 50,000 users, and 0.18 ms once vacuumed. Free room in each page
    # lets such updates stay on their page (HOT) and be pruned as the page is read; vacuum
    # comes after 2 % of the rows changed instead of 20 %.
    Migration(
        2,
        "room for row versions in resources, and earlier vacuums",
        """
        ALTER TABLE resources SET (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.02);
        """,
    ),
    Migration(
        3,
        "failed attempts per key (sign-ins of names that are no account), bounded",
        """
        CREATE TABLE failures (
            digest bytea PRIMARY KEY,
            moments timestamptz[] NOT NULL,
            expires timestamptz NOT NULL
        );
        CREATE INDEX failures_expires ON failures (expires);
        """,
    ),
    # A user's or group's page lists the newest events naming it: found by their text, the
    # whole table was read (0.15-0.25 s at 100,000 events, on every such page).
    Migration(
        4,
        "the activity events of one resource, newest first",
        """
        CREATE INDEX activity_about ON activity ((event->>'id'), seq);
        """,
    ),
]

LATEST = MIGRATIONS[-1].number

_RECORD_TABLE = """
    CREATE TABLE IF NOT EXISTS proware_schema_migrations (
        version integer PRIMARY KEY,
        name text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
    )
"""


def apply_migrations(
    connection: psycopg.Connection, migrations: list[Migration] = MIGRATIONS
) -> list[int]:
    """Bring the database's schema up to date; returns the numbers of the migrations applied.

    :param connection: a connection in autocommit mode (the migrations make their own
        transaction).
    :param migrations: the list to apply (tests pass longer ones).
    :raises CorruptStore: if the database records a migration newer than ``migrations``.
    """
    known = {migration.number for migration in migrations}
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        connection.execute(_RECORD_TABLE, prepare=False)
        applied = {
            row[0] for row in connection.execute("SELECT version FROM proware_schema_migrations")
        }
        unknown = sorted(applied - known)
        if unknown:
            # Not "restore a backup": this version's restore opens the database first, and so
            # is refused the same way. The way named was walked back from schema 3 to a
            # Proware of schema 1 (25d1100): every user, group, token, admin, single sign-on
            # setting and activity event came back.
            raise CorruptStore(
                f"the PostgreSQL database's schema is at version {max(applied)}, but this "
                f"version of Proware knows versions up to {max(known, default=0)} "
                f"(unknown: {', '.join(map(str, unknown))}): a newer Proware upgraded it, and "
                "this version can neither use it nor restore into it. Run the newer version; "
                "or, to come back to this one, copy the install out with the newer version "
                "(python app.py storage migrate --to DIRECTORY), then into a new, empty "
                "database with this one (storage migrate --to DSN, its config naming "
                "DIRECTORY); the database was left unchanged"
            )
        done = []
        for migration in sorted(migrations):
            if migration.number in applied:
                continue
            # Several statements in one string: sent unprepared, as one simple query.
            connection.execute(migration.sql, prepare=False)
            connection.execute(
                "INSERT INTO proware_schema_migrations (version, name) VALUES (%s, %s)",
                (migration.number, migration.name),
            )
            done.append(migration.number)
    return done
