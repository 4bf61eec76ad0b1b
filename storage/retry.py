"""Running one unit of work as a transaction, again if the database gave up on it.

PostgreSQL answers a deadlock (SQLSTATE 40P01) by rolling back one of the transactions in
it, and a serialization failure (40001) likewise; either can happen to any transaction that
locks more than one row, whatever order the code takes its locks in. Such a transaction
wrote nothing, so :func:`run_transaction` runs the caller's whole unit again, a few times,
after a short random pause (so that the two that collided do not collide again in step).

The unit must be re-runnable: it reads and writes only through the transaction it is given
and changes nothing outside it (no input it was handed, no cache, no log). What is to happen
after the commit (activity listeners, caches) happens after :func:`run_transaction` returns.
The embedded stores never raise :class:`~storage.errors.Contention`: for them this is one
transaction.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from storage.errors import Contention
from storage.repository import Repository, Transaction

log = logging.getLogger("proware.storage")

T = TypeVar("T")

# Runs of one unit at most: a collision twice in a row is rare, three times means a lasting
# conflict, which the client (Entra) is better told about (503, retried later).
ATTEMPTS = 3
# The pause before the n-th run is random in [0, BACKOFF * 2 ** (n - 2)] seconds.
BACKOFF = 0.05


def run_transaction(
    repository: Repository,
    work: Callable[[Transaction], T],
    *,
    attempts: int = ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``work(tx)`` in one transaction, committed; run again (up to ``attempts`` in all) if
    the database rolled it back because of another transaction.

    :raises Contention: the last run was rolled back too (nothing of any run was written).
    """
    for attempt in range(1, attempts + 1):
        try:
            with repository.transaction() as tx:
                result = work(tx)
            return result
        except Contention as error:
            if attempt == attempts:
                raise
            log.info("transaction rolled back (%s); running it again", error)
            sleep(random.uniform(0, BACKOFF * 2 ** (attempt - 1)))
    raise AssertionError("unreachable")  # pragma: no cover
