"""The layout a shared document must have for its readers to trust it.

The owner of each shared document (:mod:`scim.tokens`, :mod:`admin.accounts`, ...) declares
its layout with these few constructors (:meth:`storage.documents.SharedDocument.declare`).
The document checks each new version against it once, where it already refuses one that is
not JSON, and refuses a version that does not fit as damaged
(:class:`storage.errors.DamagedDocument`) in the same way: so a hand edit that leaves valid
JSON of the wrong shape (``{"tokens": 5}``) is a 503 that says where, not a TypeError in
whichever decoder meets it first, and the decoders can trust what they are given.

Only what the readers rely on is declared: keys no reader looks at (ones an older version
wrote, or a newer one adds) pass, and a key readers find with ``.get`` is optional.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime


class Shape:
    """What one JSON value must be."""

    def problem(self, value: object, where: str) -> str | None:
        """What is wrong with ``value``, found at ``where`` (``tokens[2].hash``); None if
        nothing is."""
        raise NotImplementedError


class _Scalar(Shape):
    def __init__(self, fits: Callable[[object], bool], wanted: str) -> None:
        self._fits = fits
        self._wanted = wanted

    def problem(self, value: object, where: str) -> str | None:
        return None if self._fits(value) else f"{where}: not {self._wanted}"


def _moment(value: object) -> bool:
    # The readers compare these with aware datetimes: one without an offset would raise.
    if not isinstance(value, str):
        return False
    try:
        return datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


TEXT = _Scalar(lambda value: isinstance(value, str), "a string")
FLAG = _Scalar(lambda value: isinstance(value, bool), "true or false")
WHOLE = _Scalar(
    lambda value: isinstance(value, int) and not isinstance(value, bool), "a whole number"
)
MOMENT = _Scalar(_moment, "a date and time with its UTC offset (ISO 8601)")


def one_of(*values: str) -> Shape:
    """One of the strings ``values`` (anything else would be read as one of them)."""
    wanted = " or ".join(repr(value) for value in values)
    return _Scalar(lambda value: value in values, wanted)


class nullable(Shape):  # noqa: N801 - reads as a type: nullable(TEXT)
    """``null`` or ``shape``."""

    def __init__(self, shape: Shape) -> None:
        self._shape = shape

    def problem(self, value: object, where: str) -> str | None:
        return None if value is None else self._shape.problem(value, where)


class list_of(Shape):  # noqa: N801
    """A list whose every item is ``shape``."""

    def __init__(self, item: Shape) -> None:
        self._item = item

    def problem(self, value: object, where: str) -> str | None:
        if not isinstance(value, list):
            return f"{where}: not a list"
        for index, item in enumerate(value):
            found = self._item.problem(item, f"{where}[{index}]")
            if found is not None:
                return found
        return None


class map_of(Shape):  # noqa: N801
    """An object whose every value is ``shape`` (the keys are data: ids, names)."""

    def __init__(self, item: Shape) -> None:
        self._item = item

    def problem(self, value: object, where: str) -> str | None:
        if not isinstance(value, dict):
            return f"{where}: not an object"
        for key, item in value.items():
            found = self._item.problem(item, f"{where}[{key!r}]")
            if found is not None:
                return found
        return None


class Record(Shape):
    """An object with the keys ``required`` and maybe ``optional``, each of its shape.

    Other keys pass: the readers do not look at them.
    """

    def __init__(
        self,
        required: Mapping[str, Shape] | None = None,
        optional: Mapping[str, Shape] | None = None,
    ) -> None:
        self._required = dict(required or {})
        self._optional = dict(optional or {})

    def problem(self, value: object, where: str) -> str | None:
        if not isinstance(value, dict):
            return f"{where}: not an object"
        for key, shape in self._required.items():
            if key not in value:
                return f"{_key(where, key)}: missing"
            found = shape.problem(value[key], _key(where, key))
            if found is not None:
                return found
        for key, shape in self._optional.items():
            if key in value:
                found = shape.problem(value[key], _key(where, key))
                if found is not None:
                    return found
        return None


class DocumentShape(Record):
    """A shared document's layout: a :class:`Record` at the top, of format ``format``.

    A document of another format (written by a newer Proware, or edited) is damage too: its
    readers would misread it. With ``other_formats_pass``, it is not checked instead: its
    owner reads it as empty and writes its own format over it (bookkeeping, such as the
    connection status). None: the document has no format.
    """

    def __init__(
        self,
        format: int | None = None,
        *,
        required: Mapping[str, Shape] | None = None,
        optional: Mapping[str, Shape] | None = None,
        other_formats_pass: bool = False,
    ) -> None:
        super().__init__(required, optional)
        self.format = format
        self.other_formats_pass = other_formats_pass

    def problem(self, value: object, where: str = "") -> str | None:
        if self.format is not None and isinstance(value, dict):
            found = value.get("format", self.format)
            if found != self.format:
                if self.other_formats_pass:
                    return None
                if isinstance(found, int) and not isinstance(found, bool) and found > self.format:
                    # Not "restore a backup": a backup holds users and groups, none of these.
                    return (
                        f"format {found} is newer than this version of Proware reads "
                        f"({self.format}): run the newer Proware, or put back this document "
                        "as this version wrote it (a backup does not hold it)"
                    )
                return f"format: {found!r} is no format of Proware's (it reads {self.format})"
        return super().problem(value, where)


def _key(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
