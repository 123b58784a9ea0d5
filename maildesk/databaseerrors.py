"""Explain a database error to the admin: the error that caused it, and what to do.

SQLite reports a full disk, a file without write permission and a lock held too long
with short texts such as "database or disk is full". When such an error ends a
transaction, SQLite has already rolled it back, and peewee's own ROLLBACK then fails
with "cannot rollback - no transaction is active". That second error is the one raised,
and it names none of the causes. ``describe`` finds the first error again and adds the
folder or file concerned and the fix. PostgreSQL's messages name their cause already
and are passed on unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

import peewee as pw

from maildesk import models
from maildesk.i18n import _

# Errors that peewee or SQLite raise while cleaning up after the error that mattered.
_FOLLOW_UP_ERRORS = ("cannot rollback - no transaction is active",
                     "cannot commit - no transaction is active")



def describe(error: BaseException) -> str:
    """Return the text of a database error with its cause and, for SQLite, the fix."""
    cause = _first_cause(error)
    text = str(cause).strip() or type(cause).__name__
    path = _sqlite_path()
    if path is None:
        return text
    hint = _sqlite_hint(text, path)
    return f"{text} ({hint})" if hint else text


def is_unavailable(error: BaseException) -> bool:
    """Tell whether a database error means the database cannot be used now, not a bug.

    Besides OperationalError and InterfaceError, peewee raises DatabaseError itself for
    a SQLite file that is damaged or is no database. Its subclasses IntegrityError,
    ProgrammingError and the like come from a statement and are bugs.
    """
    return (isinstance(error, (pw.OperationalError, pw.InterfaceError))
            or type(error) is pw.DatabaseError)


def _first_cause(error: BaseException) -> BaseException:
    """Return the error that the clean-up errors of a failed transaction hide, if any."""
    current: BaseException | None = error
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if not any(text in str(current) for text in _FOLLOW_UP_ERRORS):
            return current
        current = current.__context__
    return error


def _sqlite_path() -> Path | None:
    """Return the path of the SQLite file in use, or None for PostgreSQL or memory."""
    database = models.database_proxy.obj
    if not isinstance(database, pw.SqliteDatabase) or database.database in ("", ":memory:"):
        return None
    return Path(database.database)


def _sqlite_hint(text: str, path: Path) -> str | None:
    """Return what to do about one of SQLite's error texts, or None for other texts."""
    folder = path.parent
    uid = os.geteuid()
    if "database or disk is full" in text or (
            "disk I/O error" in text and _disk_is_full(folder)):
        return _("the file system of {folder} has no free space left: free some "
                 "space there").format(folder=folder)
    if "readonly database" in text:
        return _("the user maildesk runs as (uid {uid}) must be able to write {path}, "
                 "{path}-wal, {path}-shm and the folder {folder}; SQLite gives the -wal and "
                 "-shm files the modes of the database file when it creates them").format(
            uid=uid, path=path, folder=folder)
    if "unable to open database file" in text or "disk I/O error" in text:
        return _("check that the folder {folder} exists and that the user maildesk runs "
                 "as (uid {uid}) may read and write {path}, its -wal and -shm files and "
                 "the folder").format(folder=folder, uid=uid, path=path)
    if "database is locked" in text:
        return _("another process, such as a sqlite3 shell with an open transaction, has "
                 "held a write lock on {path} for more than {seconds} s").format(
            path=path, seconds=models.SQLITE_BUSY_TIMEOUT_MS // 1000)
    if "malformed" in text or "not a database" in text:
        return _("{path} is damaged or is not a SQLite database: restore it from a "
                 "backup").format(path=path)
    return None


def _disk_is_full(folder: Path) -> bool:
    """Tell whether the file system of ``folder`` has no blocks left for this user."""
    try:
        status = os.statvfs(folder)
    except OSError:
        return False
    return status.f_bavail == 0
