"""The whole directory in and out of PostgreSQL at once: backups, restores, migrations.

:func:`snapshot` reads every user, group and membership in one repeatable-read transaction,
so a backup taken while servers write is consistent. :func:`load` writes a snapshot in one
transaction, ids, ``meta`` and member order as they are, into an empty database or in place
of what it holds: a restore either happens whole or not at all. It then analyzes the
tables, so that servers plan for the rows written (:mod:`storage.postgres.statistics`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from storage.errors import StorageError
from storage.journal.snapshot import FORMAT, Snapshot
from storage.postgres.connection import Database, jsonb
from storage.postgres.reads import fold, index_keys
from storage.postgres.statistics import PlannerStatistics
from storage.repository import Index
from storage.state import joined_order
from storage.values import version_number

KINDS = ("User", "Group")
_BATCH = 1000  # rows sent per statement

_INSERT_RESOURCES = """
    INSERT INTO resources (kind, id, version, doc, folded)
    SELECT %s, new.id, new.version, new.doc, new.folded
    FROM unnest(%s::text[], %s::bigint[], %s::jsonb[], %s::jsonb[]) WITH ORDINALITY
        AS new(id, version, doc, folded, position)
    ORDER BY new.position
"""
_INSERT_KEYS = """
    INSERT INTO resource_keys (kind, id, field, key, is_unique)
    SELECT %s, new.id, new.field, new.key, new.is_unique
    FROM unnest(%s::text[], %s::text[], %s::text[], %s::boolean[]) WITH ORDINALITY
        AS new(id, field, key, is_unique, position)
    ORDER BY new.position
"""
_INSERT_MEMBERS = """
    INSERT INTO members (group_id, user_id)
    SELECT new.group_id, new.user_id
    FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS new(group_id, user_id, position)
    ORDER BY new.position
"""


def snapshot(database: Database) -> Snapshot:
    """Every user, group and membership, as of one moment, in insertion order."""
    with database.connection() as connection, database.errors():
        with connection.transaction():
            connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            # It locks no row, and between its statements this process turns every row read
            # into a document: minutes' worth, for a directory large enough.
            connection.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
            found = Snapshot(FORMAT)
            for kind in KINDS:
                rows = connection.execute(
                    "SELECT id, doc FROM resources WHERE kind = %s ORDER BY seq", (kind,)
                )
                found.documents[kind] = {id: doc for id, doc in rows}
            # In the order added: each group's members, and each user's groups.
            for group_id, user_id in connection.execute(
                "SELECT group_id, user_id FROM members ORDER BY seq"
            ):
                found.members.setdefault(group_id, {})[user_id] = None
                found.groups.setdefault(user_id, []).append(group_id)
            event_seq = connection.execute("SELECT coalesce(max(seq), 0) FROM activity")
            found.event_seq = event_seq.fetchone()[0]  # type: ignore[index]
    return found


def membership_order(
    members: Mapping[str, Iterable[str]], joined: Mapping[str, Iterable[str]]
) -> list[tuple[str, str]]:
    """Every (group, user) pair in an order of adding that gives each group its members
    and each user its groups (:func:`storage.state.joined_order`) in their order: the
    ``seq`` of ``members`` is the one order both are read in.

    Such an order exists for any directory a history of adds and removes made; should the
    two orders contradict each other (a hand-edited file), the rest follow group by group.
    """
    member_lists = {group_id: list(user_ids) for group_id, user_ids in members.items()}
    group_lists = joined_order(member_lists, joined)
    next_member = dict.fromkeys(member_lists, 0)  # group -> index of its next member
    next_group = dict.fromkeys(group_lists, 0)  # user -> index of its next group
    order: list[tuple[str, str]] = []

    def ready(group_id: str, user_id: str) -> bool:
        groups = group_lists[user_id]
        return next_group[user_id] < len(groups) and groups[next_group[user_id]] == group_id

    waiting = [
        (group_id, users[0])
        for group_id, users in member_lists.items()
        if users and ready(group_id, users[0])
    ]
    while waiting:
        group_id, user_id = waiting.pop()
        order.append((group_id, user_id))
        next_member[group_id] += 1
        next_group[user_id] += 1
        users = member_lists[group_id]
        if next_member[group_id] < len(users) and ready(group_id, users[next_member[group_id]]):
            waiting.append((group_id, users[next_member[group_id]]))
        groups = group_lists[user_id]
        if next_group[user_id] < len(groups):
            following = groups[next_group[user_id]]
            users = member_lists[following]
            if next_member[following] < len(users) and users[next_member[following]] == user_id:
                waiting.append((following, user_id))
    if len(order) < sum(map(len, member_lists.values())):
        for group_id, users in member_lists.items():
            order.extend((group_id, user_id) for user_id in users[next_member[group_id] :])
    return order


def load(database: Database, indexes: list[Index], snapshot: Snapshot, *, replace: bool) -> None:
    """Write ``snapshot`` as the whole directory, in one transaction.

    :param replace: delete what the database holds first (a restore); otherwise it must
        hold no user or group (a migration).
    :raises StorageError: the database is not empty and ``replace`` is false.
    """
    by_key = {(index.kind, index.field): index for index in indexes}
    with database.transaction() as connection, database.errors():
        # Nothing else writes the directory meanwhile: a server's transaction waits here.
        connection.execute("LOCK TABLE resources, members, resource_keys IN EXCLUSIVE MODE")
        if replace:
            connection.execute("DELETE FROM members")
            connection.execute("DELETE FROM resources")  # its index keys go with it
        elif connection.execute("SELECT EXISTS (SELECT FROM resources)").fetchone()[0]:  # type: ignore[index]
            raise StorageError(
                f"the PostgreSQL database {database.shown} already holds users or groups; "
                "migrate only into an empty database (nothing was changed)"
            )
        for kind in KINDS:
            documents = list(snapshot.documents.get(kind, {}).items())
            for start in range(0, len(documents), _BATCH):
                batch = documents[start : start + _BATCH]
                ids = [id for id, _ in batch]
                connection.execute(
                    _INSERT_RESOURCES,
                    (
                        kind,
                        ids,
                        [version_number(doc["meta"]["version"]) for _, doc in batch],
                        [jsonb(doc) for _, doc in batch],
                        [jsonb(fold(doc)) for _, doc in batch],
                    ),
                )
                rows = [
                    (id, field, key, unique)
                    for id, doc in batch
                    for field, (key, unique) in index_keys(by_key, kind, doc).items()
                ]
                if rows:
                    connection.execute(_INSERT_KEYS, (kind, *map(list, zip(*rows, strict=True))))
        pairs = membership_order(snapshot.members, snapshot.groups)
        for start in range(0, len(pairs), _BATCH):
            chunk = pairs[start : start + _BATCH]
            connection.execute(
                _INSERT_MEMBERS,
                ([group_id for group_id, _ in chunk], [user_id for _, user_id in chunk]),
            )
    # Servers started next plan their statements for the rows just written, not for none.
    PlannerStatistics(database).analyze()
