"""The PostgreSQL backend: the directory, shared documents, secrets and activity in one
database that any number of server processes share (psycopg 3, psycopg_pool).

- :mod:`storage.postgres.backend`: :class:`PostgresBackend`, what ``[storage] backend =
  "postgresql"`` opens;
- :mod:`storage.postgres.repository` and :mod:`storage.postgres.transaction`: the
  repository, with :mod:`storage.postgres.reads` (reads shared by both) and
  :mod:`storage.postgres.conditions` (queries translated into SQL);
- :mod:`storage.postgres.documents` (shared JSON documents, secrets),
  :mod:`storage.postgres.events` (the activity log), :mod:`storage.postgres.transfer` (the
  whole directory in and out at once: backups, restores, migrations);
- :mod:`storage.postgres.connection`: the connection pool, error translation,
  :func:`redact_dsn`; :mod:`storage.postgres.migrations`: the schema;
  :mod:`storage.postgres.statistics`: the planner's statistics, analyzed as tables grow.

Imports only :mod:`storage` modules, psycopg and psycopg_pool: never scim, admin, server or
Flask. Importing this package does not import psycopg; its modules do.
"""
