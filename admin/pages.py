"""Rendering shared by the control panel's views: times, error pages, the refused-form page."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Response, render_template
from markupsafe import Markup

# Status lines for people (the SCIM API answers the same statuses in JSON).
_TITLES = {
    400: "Bad request",
    403: "Forbidden",
    404: "Page not found",
    405: "Method not allowed",
    413: "Request too large",
    500: "Something went wrong",
}


# Bidirectional embeddings, overrides and isolates (not the marks, U+200E/F): each reorders
# the text after it up to the end of its paragraph, not only the value that carries it.
_REORDERING = {code: f"\\u{code:04x}" for code in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def shown(value: object) -> object:
    """Every value a page shows (Jinja's ``finalize``), with the bidirectional controls
    that reorder text written out visibly, as ``activity tail`` writes them (``\\u202e``).

    Names come from the SCIM client: a userName "rtl\\u202egnp.exe" read "rtlexe.png" on
    its page, and the user's "active" badge after it was pulled into the reversed text.
    """
    if not isinstance(value, str) or value.isascii():
        return value
    text = value.translate(_REORDERING)
    # A macro's or a filter's HTML stays HTML: the escapes written in are plain text.
    return Markup(text) if isinstance(value, Markup) else text


def page_number(text: str | None) -> int:
    """A ``page`` query parameter as a 1-based page number: 1 when missing or not a positive
    whole number. Digits are ASCII ones: "²" is a digit to ``str.isdigit`` that ``int``
    refuses (the activity page answered ``?page=²`` with a 500)."""
    if text and text.isascii() and text.isdigit():
        return max(int(text), 1)
    return 1


def when(value: datetime | str | None) -> str:
    """A moment as "2026-11-26 10:54:52 UTC" ("" for None, the text itself if unparseable)."""
    moment = _moment(value)
    if moment is None:
        return "" if value is None else str(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def date(value: datetime | str | None) -> str:
    """A moment as "2026-11-26" ("" for None)."""
    moment = _moment(value)
    if moment is None:
        return "" if value is None else str(value)
    return moment.strftime("%Y-%m-%d")


def error_page(status: int, message: str) -> Response:
    """An HTML error page for control panel paths (the app's error handlers call this)."""
    title = _TITLES.get(status, "Error")
    body = render_template("admin/error.html", status=status, title=title, message=message)
    response = Response(body, status=status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


def forged_form() -> Response:
    """400 for a POST without this session's CSRF token; nothing was changed."""
    return error_page(
        400,
        "This form was not sent from a page of this control panel session (its security "
        "token is missing or out of date), so nothing was changed. Go back, reload the "
        "page and try again.",
    )


def _moment(value: datetime | str | None) -> datetime | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
