"""Connection status: what Entra's Test Connection and each provisioning cycle did, per token.

For every SCIM request the control panel keeps, per bearer token, the last few requests
(time, client address, result) and the last Test Connection probe; requests refused before a
token was accepted (no header, unknown token, a JWT) are kept under "no valid token". Each
refusal is shown with its reason and what to fix. Repeated identical refusals (same reason,
client and detail) are counted, not kept one by one, so an Entra job retrying a bad token
for days does not push everything else out.

Entra's Test Connection (entra-provisioning.md A1) is ``GET /Users?filter=userName eq
"<random GUID>"`` and passes on "200 with an empty ListResponse"; the same probe recurs as a
keep-alive. It is recognised by that shape.

Kept in memory and saved to a shared document (``connection-status.json`` in the data
directory, or the database's) at most once a minute and when the server stops, so a restart
does not blank the page; several server processes merge their histories there. A request
recorded within the minute after a save is saved when that minute is up (a timer), with or
without more requests: the page another process serves shows it a minute later at most. A
Test Connection probe is saved within a second: the person who pressed it in Entra looks at
this page next, and may be served by another process.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote_plus

from storage.controlfile import ControlFile
from storage.documents import SharedDocument
from storage.errors import CorruptStore, DamagedDocument, StorageError, log_background_failure
from storage.repository import Clock
from storage.saving import BackgroundSave, PacedSave, Timer, start_timer
from storage.shapes import FLAG, TEXT, WHOLE, DocumentShape, Record, list_of, nullable
from storage.values import UNSTORABLE

log = logging.getLogger("proware.admin")

FILE_NAME = "connection-status.json"
FORMAT = 1
RECENT = 15  # requests kept per token
REFUSALS = 20  # distinct refusals kept per token
SAVE_INTERVAL = timedelta(minutes=1)
# A Test Connection probe is saved this soon (a client sending probes in a loop gets one save
# a second per server process, not one per request).
PROBE_SAVE_INTERVAL = timedelta(seconds=1)

# Test Connection's query: the matching attribute equals a fresh GUID (Entra A1). Groups are
# probed the same way by displayName when group provisioning is on.
_PROBE = re.compile(
    r'^\s*(?:userName|displayName)\s+eq\s+"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}'
    r'-[0-9a-f]{12}"\s*$',
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Reason:
    """A refusal reason for people: what happened and what to fix."""

    label: str
    fix: str


# The reasons of scim/api/auth.py (REASON_*), in words.
REASONS: dict[str, Reason] = {
    "no-header": Reason(
        "No Authorization header",
        "Paste a Proware bearer token into the Secret Token field of Entra's Provisioning tab, "
        "then press Test Connection and Save.",
    ),
    "not-bearer": Reason(
        "Not a bearer token",
        "The client must send 'Authorization: Bearer <token>'. In Entra, put the token in "
        "the Secret Token field, with nothing before it. In Okta, choose the Authentication "
        "Mode 'HTTP Header' (not Basic Auth) and paste the token as its Bearer value.",
    ),
    "jwt": Reason(
        "Entra's own JWT: the Secret Token field is empty",
        "Create bearer token here and paste it into Entra's Secret Token field; Entra sends "
        "its own JWT only when that field is left empty.",
    ),
    "unknown-token": Reason(
        "Unknown token",
        "The token is not one of this server's. Check that Entra's Secret Token holds the "
        "whole token with no spaces, or create a new token and paste it again.",
    ),
    "revoked-token": Reason(
        "Revoked token",
        "Create a new bearer token, paste it into Entra's Secret Token field, press Test "
        "Connection and Save.",
    ),
    "expired-token": Reason(
        "Expired token",
        "Create a new bearer token and update Entra: while the token is expired, Entra's "
        "provisioning job fails and goes into quarantine.",
    ),
    "provisioning-disabled": Reason(
        "User Provisioning is disabled",
        "Enable User Provisioning above (or run 'python app.py provisioning enable').",
    ),
    "read-only-token": Reason(
        "Read-only token used to change data",
        "Entra needs a read-write token: create one and paste it into Entra.",
    ),
}


@dataclass(frozen=True)
class Observation:
    """One SCIM request as the HTTP layer saw it."""

    time: str
    client: str
    token: str | None
    method: str
    path: str
    query: str
    filter: str | None
    status: int
    reason: str | None = None
    detail: str | None = None
    matched: int | None = None  # for a list or search: how many resources matched
    # The token's id (scim.tokens.TokenInfo.id): what its history is kept under, so that a
    # new token given a revoked one's name starts with none. None with ``token``.
    token_id: str | None = None
    # What a PATCH that succeeded skipped (Entra Q22, Q23): attributes unknown to the
    # resource, and member ids that name no user.
    skipped: tuple[str, ...] = ()
    skipped_members: tuple[str, ...] = ()


@dataclass
class RequestRecord:
    """A row of "last requests": identical consecutive requests share one row."""

    time: str
    client: str
    method: str
    target: str
    status: int
    result: str
    probe: bool = False
    count: int = 1


@dataclass
class Refusal:
    """A refused request, with how often the same refusal was seen."""

    reason: str
    detail: str
    client: str
    status: int
    first: str
    last: str
    count: int = 1

    @property
    def label(self) -> str:
        """What happened, in words."""
        return REASONS[self.reason].label if self.reason in REASONS else self.reason

    @property
    def fix(self) -> str:
        """What the admin should do about it."""
        return REASONS[self.reason].fix if self.reason in REASONS else ""


@dataclass
class TokenStatus:
    """The connection status of one token (``name`` None: requests with no valid token),
    kept under its ``token_id``: two tokens of one name have a status each."""

    name: str | None
    token_id: str | None = None
    recent: list[RequestRecord] = field(default_factory=list)  # newest first
    refusals: list[Refusal] = field(default_factory=list)  # most recent first
    last_probe: RequestRecord | None = None


_ROW = Record(
    required={
        "time": TEXT,
        "client": TEXT,
        "method": TEXT,
        "target": TEXT,
        "status": WHOLE,
        "result": TEXT,
    },
    optional={"probe": FLAG, "count": WHOLE},
)
_REFUSAL = Record(
    required={
        "reason": TEXT,
        "detail": TEXT,
        "client": TEXT,
        "status": WHOLE,
        "first": TEXT,
        "last": TEXT,
    },
    optional={"count": WHOLE},
)
# What _decode relies on (checked once a version: storage.shapes). Entries saved before they
# carried the token's id have none, and are skipped.
SHAPE = DocumentShape(
    FORMAT,
    other_formats_pass=True,  # another format's history is not read, and is saved over
    optional={
        "tokens": nullable(
            list_of(
                Record(
                    required={
                        "name": nullable(TEXT),
                        "recent": list_of(_ROW),
                        "refusals": list_of(_REFUSAL),
                        "last_probe": nullable(_ROW),
                    },
                    optional={"token_id": nullable(TEXT)},
                )
            )
        )
    },
)


def is_probe(method: str, path: str, filter_text: str | None) -> bool:
    """Whether a request has the shape of Entra's Test Connection probe (Entra A1)."""
    if method != "GET" or not filter_text:
        return False
    endpoint = path.rstrip("/").rsplit("/", 1)[-1]
    return endpoint in ("Users", "Groups") and _PROBE.match(filter_text) is not None


def summarise(observation: Observation) -> str:
    """The "result" column for a request."""
    status = observation.status
    probe = is_probe(observation.method, observation.path, observation.filter)
    if observation.reason:
        label = REASONS.get(observation.reason)
        what = label.label if label else observation.reason
        prefix = "Test Connection probe refused" if probe else "Refused"
        return f"{prefix}: {what}"
    if probe:
        if status == 200 and observation.matched == 0:
            return "Test Connection probe: no match, as Entra expects"
        if status == 200:
            return f"Test Connection probe matched {observation.matched} (unusual for a GUID)"
        return f"Test Connection probe failed: {observation.detail or status}"
    if status >= 400:
        return observation.detail or f"failed with {status}"
    if observation.matched is not None:
        return f"{observation.matched} matched"
    done = {"POST": "created", "PUT": "replaced", "PATCH": "updated", "DELETE": "deleted"}.get(
        observation.method, "OK"
    )
    if observation.skipped:
        done += f"; skipped unknown attributes: {', '.join(observation.skipped)}"
    if observation.skipped_members:
        done += f"; skipped member ids that name no user: {', '.join(observation.skipped_members)}"
    return done


class ConnectionStatus:
    """Per-token request history, thread-safe, saved now and then to a shared document.

    Several server processes each see only their own requests; saving merges this one's
    history with what the others saved (the newest rows, the refusals seen anywhere), and
    the control panel's page merges before it reads (:meth:`synced`), so every process
    shows every process's requests.

    :param document: where the history is kept (a path: a control file there; None: memory
        only).
    """

    def __init__(
        self,
        document: SharedDocument | Path | None,
        *,
        clock: Clock,
        recent: int = RECENT,
        refusals: int = REFUSALS,
        save_interval: timedelta = SAVE_INTERVAL,
        timer: Callable[[float, Callable[[], None]], Timer] | None = None,
    ) -> None:
        self.document = ControlFile(document) if isinstance(document, Path) else document
        if self.document is not None:
            self.document.declare(SHAPE)
        self.clock = clock
        self._recent = recent
        self._refusals = refusals
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._tokens: dict[str | None, TokenStatus] = {}
        self._dirty = False
        # Off the request path (storage.saving): the request only asks for the save.
        self._saving = BackgroundSave(self._save_logged, "proware-connection-status")
        self._pacing = PacedSave(self._saving, save_interval, clock, timer or _start_save_timer)
        # Measured with two server processes behind nginx: a probe answered by one was missing
        # from the page the other served for 60 s, which then said "no probe seen yet: press
        # Test Connection in Entra" while Entra reported success.
        self._probe_pacing = PacedSave(
            self._saving, PROBE_SAVE_INTERVAL, clock, timer or _start_save_timer
        )
        if self.document is not None:
            self._load()

    def record(self, observation: Observation) -> None:
        """Add a request to its token's history."""
        result = summarise(observation)
        probe = is_probe(observation.method, observation.path, observation.filter)
        # Shown decoded, as a person reads it: filter=userName eq "..." (Entra A1).
        observation = _storable(observation)
        query = unquote_plus(observation.query)
        target = _clean(observation.path + (f"?{query}" if query else ""))
        row = RequestRecord(
            time=observation.time,
            client=observation.client,
            method=observation.method,
            target=target[:300],
            status=observation.status,
            result=result,
            probe=probe,
        )
        with self._lock:
            status = self._tokens.get(observation.token_id)
            if status is None:
                status = TokenStatus(observation.token, observation.token_id)
                self._tokens[observation.token_id] = status
            _push_recent(status.recent, row, self._recent)
            if probe:
                status.last_probe = replace(row)
            if observation.reason:
                _push_refusal(status.refusals, observation, self._refusals)
            self._dirty = True
        if probe and self.document is not None:
            self._probe_pacing.request()
        self._save_now_and_then()

    def tokens(self) -> list[TokenStatus]:
        """A copy of every token's status."""
        with self._lock:
            return [_copy(status) for status in self._tokens.values()]

    def last_request(self) -> RequestRecord | None:
        """The newest request of any token."""
        with self._lock:
            rows = [status.recent[0] for status in self._tokens.values() if status.recent]
        return replace(max(rows, key=lambda row: row.time)) if rows else None

    def synced(self) -> ConnectionStatus:
        """This status after merging what other processes saved (for the page that shows it);
        a failure to reach the document leaves this process's own view."""
        try:
            self.save(force=True)
        except DamagedDocument as exc:
            exc.report(log)
        except (OSError, StorageError) as exc:
            log_background_failure(log, "could not merge the connection status", exc)
        return self

    def save(self, *, force: bool = False) -> None:
        """Merge this history into the document, and the document's into this one (if this
        one changed, or ``force``)."""
        if self.document is None:
            return
        with self._save_lock:
            with self._lock:
                if not (self._dirty or force):
                    return
                mine = [_copy(status) for status in self._tokens.values()]
                self._dirty = False
            merged: list[TokenStatus] = []

            def merge(document: dict) -> None:
                theirs = _decode(document) if document.get("format") == FORMAT else []
                merged[:] = _merge(theirs, mine, self._recent, self._refusals)
                document.clear()
                document.update(format=FORMAT, tokens=[asdict(status) for status in merged])

            try:
                self.document.update(merge)
            except BaseException:
                with self._lock:
                    self._dirty = True
                raise
            with self._lock:
                # Requests recorded meanwhile stay on top of the merged history.
                current = [_copy(status) for status in self._tokens.values()]
                self._tokens = {
                    status.token_id: status
                    for status in _merge(merged, current, self._recent, self._refusals)
                }
            self._pacing.saved()

    def _save_now_and_then(self) -> None:
        """Save now if the last save is a minute old, else when that minute is up.

        Only the first, a request in the minute after a save stayed in this process until
        its next request a minute on: with several processes, Entra's Test Connection
        answered by one was missing from the page the others served (seen for 90 s and
        counting; Entra's next request may come 40 minutes later).
        """
        if self.document is not None:
            self._pacing.request()

    def wait_for_save(self) -> None:
        """Return once the save :meth:`record` started (if any) is over."""
        self._saving.wait()

    def flush(self) -> None:
        """Save what is not saved yet, now (the server process stops), after the save
        :meth:`record` started, if one is going on; call off the scheduled one. A failure
        is logged, not raised."""
        self._pacing.call_off()
        self._probe_pacing.call_off()
        self._saving.wait()
        self._save_logged()

    def _save_logged(self) -> None:
        try:
            self.save()
        except DamagedDocument as exc:  # saved once it is repaired
            exc.report(log)
        except (OSError, StorageError) as exc:
            # Never a request's failure: it was answered already (the status is a view).
            log_background_failure(log, "could not save the connection status", exc)

    def _load(self) -> None:
        assert self.document is not None
        try:
            document = self.document.read()
        except CorruptStore as exc:
            # Saves refuse to overwrite it until it is repaired (storage.controlfile).
            log.warning("%s; starting the connection status afresh", exc)
            return
        if document.get("format") == FORMAT:
            self._tokens = {status.token_id: status for status in _decode(document)}


TIMER_THREAD = "proware-connection-status-timer"


def _start_save_timer(delay: float, call: Callable[[], None]) -> Timer:
    return start_timer(delay, call, TIMER_THREAD)


def _storable(observation: Observation) -> Observation:
    """The observation with what a person can read and any store can hold (no NUL, no lone
    surrogate) in the text a client chose: path, query, filter and the detail echoing them.

    Runs on every SCIM request: one search over the lot, and a copy only when it finds one.
    """
    chosen = (observation.path, observation.query, observation.filter, observation.detail)
    if UNSTORABLE.search("".join(text for text in chosen if text)) is None:
        return observation
    return replace(
        observation,
        path=_clean(observation.path),
        query=_clean(observation.query),
        filter=_clean(observation.filter) if observation.filter is not None else None,
        detail=_clean(observation.detail) if observation.detail is not None else None,
    )


def _clean(text: str) -> str:
    return UNSTORABLE.sub("\ufffd", text)


def _decode(document: dict) -> list[TokenStatus]:
    """The token statuses a saved document holds (entries it cannot read are skipped).

    A token's entry saved before entries carried the token's id is skipped too: it may be
    the history of an earlier, revoked token of the same name.
    """
    statuses = []
    for item in document.get("tokens") or []:
        if item.get("name") is not None and not item.get("token_id"):
            continue
        try:
            statuses.append(
                TokenStatus(
                    name=item["name"],
                    token_id=item.get("token_id"),
                    recent=[RequestRecord(**row) for row in item["recent"]],
                    refusals=[Refusal(**refusal) for refusal in item["refusals"]],
                    last_probe=RequestRecord(**item["last_probe"]) if item["last_probe"] else None,
                )
            )
        except (KeyError, TypeError):
            continue
    return statuses


def _merge(
    first: list[TokenStatus], second: list[TokenStatus], recent: int, refusals: int
) -> list[TokenStatus]:
    """Two histories as one: each token's newest rows, its refusals seen in either (the
    larger count of a refusal both saw: each process starts from the merged one), and the
    newer probe.

    ``second`` is the newer history (this process's, merged into the saved one): of a row,
    refusal or probe both have with the same time (kept to the millisecond), its copy wins,
    with the larger count. Taking the first's on a tie, a request repeated or a probe run
    again within the saved millisecond was lost with the save."""
    merged = {status.token_id: _copy(status) for status in first}
    for status in second:
        into = merged.get(status.token_id)
        if into is None:
            merged[status.token_id] = _copy(status)
            continue
        rows = {_row_key(row): row for row in into.recent}
        for row in status.recent:
            known = rows.get(_row_key(row))
            if known is None or row.time >= known.time:
                count = max(row.count, known.count) if known is not None else row.count
                rows[_row_key(row)] = replace(row, count=count)
        into.recent = _newest_first(rows.values(), status.recent, _row_key, "time")[:recent]
        seen = {_refusal_key(r): r for r in into.refusals}
        for refusal in status.refusals:
            known_refusal = seen.get(_refusal_key(refusal))
            if known_refusal is None or refusal.last >= known_refusal.last:
                seen[_refusal_key(refusal)] = replace(
                    refusal,
                    count=max(refusal.count, known_refusal.count if known_refusal else 0),
                )
        into.refusals = _newest_first(seen.values(), status.refusals, _refusal_key, "last")[
            :refusals
        ]
        probes = [probe for probe in (status.last_probe, into.last_probe) if probe is not None]
        into.last_probe = replace(max(probes, key=lambda row: row.time)) if probes else None
    return list(merged.values())


_Item = TypeVar("_Item", "RequestRecord", "Refusal")


def _newest_first(
    items: Iterable[_Item], order: list[_Item], key: Callable[[_Item], tuple], time: str
) -> list[_Item]:
    """``items`` newest first by their ``time`` attribute; those stamped in the same
    millisecond in the order ``order`` (the newer history, kept newest first as it was
    recorded) has them, then the others. Sorted by time alone, two refusals seen within one
    millisecond swapped places once merged with a save."""
    rank = {key(item): index for index, item in enumerate(order)}
    return sorted(
        items,
        key=lambda item: (getattr(item, time), -rank.get(key(item), len(rank))),
        reverse=True,
    )


def _refusal_key(refusal: Refusal) -> tuple:
    """What tells two refusals apart (a repeat is counted on its twin)."""
    return (refusal.reason, refusal.client, refusal.detail)


def _row_key(row: RequestRecord) -> tuple:
    """What tells two rows apart: not when or how often the request repeated (a process
    moves its newest row's time and count on while the same request repeats)."""
    return (row.client, row.method, row.target, row.status, row.result, row.probe)


def _copy(status: TokenStatus) -> TokenStatus:
    return TokenStatus(
        name=status.name,
        token_id=status.token_id,
        recent=[replace(row) for row in status.recent],
        refusals=[replace(refusal) for refusal in status.refusals],
        last_probe=replace(status.last_probe) if status.last_probe else None,
    )


def _push_recent(rows: list[RequestRecord], row: RequestRecord, keep: int) -> None:
    """Put ``row`` first, or count it on the first row when it repeats that one."""
    if rows:
        head = rows[0]
        if (head.client, head.method, head.target, head.status, head.result) == (
            row.client,
            row.method,
            row.target,
            row.status,
            row.result,
        ):
            head.count += 1
            head.time = row.time
            return
    rows.insert(0, row)
    del rows[keep:]


def _push_refusal(refusals: list[Refusal], observation: Observation, keep: int) -> None:
    """Count a refusal on its twin, or add it; the most recent refusal comes first."""
    reason = observation.reason or ""
    detail = observation.detail or ""
    for index, refusal in enumerate(refusals):
        if (refusal.reason, refusal.client, refusal.detail) == (
            reason,
            observation.client,
            detail,
        ):
            refusal.count += 1
            refusal.last = observation.time
            refusal.status = observation.status
            refusals.insert(0, refusals.pop(index))
            return
    refusals.insert(
        0,
        Refusal(
            reason=reason,
            detail=detail,
            client=observation.client,
            status=observation.status,
            first=observation.time,
            last=observation.time,
        ),
    )
    del refusals[keep:]
