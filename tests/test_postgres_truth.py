"""PostgreSQL answers the query language's ``Truth`` (``active eq false``) as it says.

Booleans, and the strings "true"/"false" in any case that Entra sends (entra-provisioning.md
Q2), on a single path and inside lists; ``eq`` and ``ne``, and their negations. The oracle
is :func:`storage.query.holds`, the language's meaning in Python.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from storage.postgres.repository import PostgresRepository
from storage.query import Not, Query, Truth, holds
from tests import pgserver
from tests.storage_contract import INDEXES

VALUES = [True, False, "True", "FALSE", "false", "yes", "", 1, None]


@pytest.fixture
def stored() -> Iterator[tuple[PostgresRepository, list[dict]]]:
    repository = PostgresRepository(pgserver.clean_database(), INDEXES)
    documents = [{"userName": "nobody"}]
    documents += [{"userName": f"a{n}", "active": value} for n, value in enumerate(VALUES)]
    documents += [
        {"userName": f"e{n}", "emails": [{"primary": first}, {"primary": second}]}
        for n, (first, second) in enumerate([(True, False), ("false", None), ("x", "FALSE")])
    ]
    with repository.transaction() as tx:
        found = [tx.insert("User", document) for document in documents]
    yield repository, found
    repository.close()


@pytest.mark.parametrize("negated", [False, True], ids=["as-is", "negated"])
@pytest.mark.parametrize("value", [True, False])
@pytest.mark.parametrize("op", ["eq", "ne"])
@pytest.mark.parametrize(
    ("path", "single"),
    [(("active",), True), (("emails", "primary"), False)],
    ids=["single", "list"],
)
def test_a_truth_selects_what_the_language_says(
    stored: tuple[PostgresRepository, list[dict]],
    path: tuple[str, ...],
    single: bool,
    op: str,
    value: bool,
    negated: bool,
) -> None:
    repository, documents = stored
    condition = Truth(path, op, value, single=single)
    where = Not(condition) if negated else condition

    found = repository.query("User", Query(where=where, exact=True, matches=lambda d: True))

    expected = [doc["userName"] for doc in documents if holds(where, doc)]
    assert sorted(doc["userName"] for doc in found.documents) == sorted(expected)
    assert found.total == len(expected)
