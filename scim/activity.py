"""Activity events: what a write did, committed in the same transaction as the write.

Each write names its operations and notes one event per operation with the request's facts
(time, token, client, request id). The event goes into the write's own transaction, so the
log and the directory never disagree after a crash, and no second fsync is paid.
"""

from __future__ import annotations

from storage.repository import Transaction

# The operations an event can name, as the activity log shows them.
CREATE = "create"
UPDATE = "update"
DISABLE = "disable"
ENABLE = "enable"
DELETE = "delete"
ADD_MEMBER = "add member"
REMOVE_MEMBER = "remove member"

# Every operation an activity event can name, in the order the control panel offers them.
OPERATIONS = (CREATE, UPDATE, DISABLE, ENABLE, DELETE, ADD_MEMBER, REMOVE_MEMBER)


def note(tx: Transaction, context: dict | None, operation: str, document: dict) -> None:
    """Commit an activity event with the change; nothing when there is no request context."""
    if context is None:
        return
    tx.note(
        {
            **context,
            "operation": operation,
            "resourceType": document["meta"]["resourceType"],
            "id": document["id"],
            "name": document.get("userName") or document.get("displayName"),
        }
    )


def describe_change(before: dict, after: dict) -> list[str]:
    """Name a document change for the activity log; [] when nothing changed.

    Turning ``active`` off or on is its own operation (:data:`DISABLE`, :data:`ENABLE`); any
    other difference is an :data:`UPDATE`.
    """
    if before == after:
        return []
    was, now = before.get("active"), after.get("active")
    rest_before = {k: v for k, v in before.items() if k != "active"}
    rest_after = {k: v for k, v in after.items() if k != "active"}
    operations = []
    if was is not False and now is False:
        operations.append(DISABLE)
    elif was is False and now is not False:
        operations.append(ENABLE)
    if rest_before != rest_after or (not operations and was != now):
        operations.append(UPDATE)
    return operations
