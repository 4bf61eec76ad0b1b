"""Who owns the data directory and its files, for the messages that say whose they should be.

Run as a service, Proware's files belong to its own user (``proware``, README "Running as a
systemd service"). A command run as root instead (without ``sudo -u proware``) writes files
that user may not open, and the server then refuses what needs them. Root is thus refused
on a directory another user owns, and a file found to be someone else's is named with the
``chown`` that gives it back.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

ROOT = 0


def user_name(uid: int) -> str:
    """The login name of ``uid``, or the number when the system knows no such user."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def owner_of(path: Path) -> int | None:
    """The uid that owns ``path``, or None if it cannot be found out (it is gone)."""
    try:
        return path.stat().st_uid
    except OSError:
        return None


def root_refusal(data_dir: Path) -> str | None:
    """Why this process may not write in ``data_dir``: it runs as root, and the directory
    is another user's (the server's). What root writes there is root's, which that user's
    server may not open: it then refused every SCIM request (503) until someone found the
    file and gave it back. None when there is no such mismatch (root's own directory, or
    not root)."""
    owner = owner_of(data_dir)
    if os.geteuid() != ROOT or owner is None or owner == ROOT:
        return None
    name = user_name(owner)
    return (
        f"the data directory {data_dir} belongs to {name}: run this as {name} "
        f"(sudo -u {name} ...), not as root, whose files {name}'s server may not open"
    )


def give_back(path: Path) -> str | None:
    """How to give ``path`` back to the owner of its directory, when it is someone else's:
    ``"control.json is root's: give it back with 'chown proware: /var/lib/proware/control.json'
    and run Proware and its commands as proware"``, with a ``chown -R`` of the directory when
    other files there are not that user's either (a server run as root leaves several, and
    naming one per failed start took four starts). None when the file is the directory
    owner's: then ownership is not what keeps it closed."""
    directory = path.parent
    owner, holder = owner_of(directory), owner_of(path)
    if owner is None or holder is None or holder == owner:
        return None
    name = user_name(owner)
    try:
        others = sum(1 for entry in directory.iterdir() if owner_of(entry) not in (None, owner))
    except OSError:
        others = 1
    if others > 1:
        remedy = (
            f"{path.name} and {others - 1} more file(s) there are not {name}'s: give them "
            f"back with 'chown -R {name}: {directory}'"
        )
    else:
        remedy = f"{path.name} is {user_name(holder)}'s: give it back with 'chown {name}: {path}'"
    return f"{remedy} and run Proware and its commands as {name}"
